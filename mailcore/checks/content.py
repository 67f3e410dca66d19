"""Built-in content inspection: header, mime_header, nested_header and body_checks.

Owns: which table list a header is checked against (a MIME header — Content-*, MIME-Version —
is checked once, against mime_header_checks, wherever it appears), body_checks_size_limit per
body part, body lines checked in line_length_limit chunks, and the per-message effect of each
action as Postfix's cleanup(8) applies it (``MessageInspector``): what happens to the line,
and the message-level verdict (reject, discard, hold, redirect, filter, bcc).

Must not: write the message, talk SMTP or write logs (log lines are returned as text; warnings
about bad table results go to the ``warn`` callback).

Invariants: after REJECT, DISCARD, REDIRECT or PASS no further lookups are made for the
message; a bad table result is warned about and treated as no match; a table lookup failure
makes the message temporarily refused (451 4.3.0), never silently accepted.
Parameters: header_checks, mime_header_checks, nested_header_checks, body_checks,
body_checks_size_limit, line_length_limit, header_size_limit, mime_nesting_limit,
mime_boundary_length_limit, disable_mime_input_processing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailcore.checks.actions import (
    BODY,
    HEADER,
    LOG_WORD,
    Action,
    ActionError,
    LogFacts,
    RejectReply,
    act_log_line,
    mime_error_log_line,
    parse_action,
)
from mailcore.checks.mime import BodyEvent, HeaderEvent, HeaderKind, MimeLimits, MimeTracker
from mailcore.config import Config
from mailcore.errors import TableError
from mailcore.tables import Table, TableSet

Warn = Callable[[str], None]

MIME_HEADER_NAMES: frozenset[str] = frozenset({
    "content-description", "content-disposition", "content-id",
    "content-transfer-encoding", "content-type", "mime-version",
})
_MAP_CLASS = {
    HeaderKind.PRIMARY: "header_checks",
    HeaderKind.MIME: "mime_header_checks",
    HeaderKind.NESTED: "nested_header_checks",
}
LOOKUP_FAILURE = RejectReply(451, "4.3.0", "Error: queue file write error")
NESTING_FAILURE = RejectReply(550, "5.6.0", "MIME nesting exceeds safety limit")

_log = logging.getLogger("mailcore.checks")


def _log_warning(message: str) -> None:
    _log.warning("%s", message)


def decode(data: bytes) -> str:
    """Message bytes as lookup-key text; bytes that are not UTF-8 survive as surrogates."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def header_name(header_text: str) -> str:
    return header_text.split(":", 1)[0].strip().lower()


@dataclass(frozen=True)
class ChecksSettings:
    header_checks: tuple[str, ...] = ()
    mime_header_checks: tuple[str, ...] = ()
    nested_header_checks: tuple[str, ...] = ()
    body_checks: tuple[str, ...] = ()
    body_checks_size_limit: int = 51200
    limits: MimeLimits = field(default_factory=MimeLimits)

    @classmethod
    def from_config(cls, config: Config) -> ChecksSettings:
        boundary = config.get("mime_boundary_length_limit").strip()
        return cls(
            header_checks=config.get_tables("header_checks"),
            mime_header_checks=config.get_tables("mime_header_checks"),
            nested_header_checks=config.get_tables("nested_header_checks"),
            body_checks=config.get_tables("body_checks"),
            body_checks_size_limit=config.get_size("body_checks_size_limit"),
            limits=MimeLimits(
                header_size_limit=config.get_size("header_size_limit"),
                mime_nesting_limit=config.get_int("mime_nesting_limit"),
                # Not every Config knows this Postfix parameter; 2048 is Postfix's default.
                mime_boundary_length_limit=int(boundary) if boundary.isdigit() else 2048,
                line_length_limit=config.get_size("line_length_limit"),
                disable_mime=config.get_bool("disable_mime_input_processing"),
            ),
        )


class ContentChecks:
    """The content-check tables of one Config snapshot; lookups only, no per-message state."""

    def __init__(self, config: Config | ChecksSettings, tables: TableSet, *,
                 warn: Warn | None = None) -> None:
        self.settings = (config if isinstance(config, ChecksSettings)
                         else ChecksSettings.from_config(config))
        self.warn: Warn = warn or _log_warning
        s = self.settings
        self._tables: dict[str, list[Table]] = {
            name: [tables.open(spec) for spec in specs]
            for name, specs in (("header_checks", s.header_checks),
                                ("mime_header_checks", s.mime_header_checks),
                                ("nested_header_checks", s.nested_header_checks),
                                ("body_checks", s.body_checks))
        }

    @property
    def enabled(self) -> bool:
        return any(self._tables.values())

    @property
    def has_body_checks(self) -> bool:
        return bool(self._tables["body_checks"])

    @property
    def reports_nesting(self) -> bool:
        """Postfix refuses over-deep MIME nesting only when some header check is configured."""
        return any(self._tables[name] for name in _MAP_CLASS.values())

    def tracker(self) -> MimeTracker:
        return MimeTracker(self.settings.limits)

    def inspector(self, facts: LogFacts) -> MessageInspector:
        return MessageInspector(self, facts)

    def header_map(self, kind: HeaderKind | str, header_text: str) -> str:
        """The parameter whose tables check this header."""
        if header_name(header_text) in MIME_HEADER_NAMES:
            return "mime_header_checks"
        return _MAP_CLASS[HeaderKind(kind)]

    async def check_header(self, kind: HeaderKind | str, header_text: str) -> Action | None:
        """The action for one logical header ("Name: value", continuation lines joined by
        "\\n"); None when nothing matched or the result is not a usable action (warned).
        A failing table raises TableError."""
        map_class = self.header_map(kind, header_text)
        return await self._check(map_class, header_text, HEADER)

    async def check_body_line(self, line: str, offset: int = 0) -> Action | None:
        """The action for one body line (or chunk) that starts ``offset`` bytes into its body
        part; None beyond body_checks_size_limit (0 means no limit) or without a match."""
        limit = self.settings.body_checks_size_limit
        if limit and offset >= limit:
            return None
        return await self._check("body_checks", line, BODY)

    async def _check(self, map_class: str, key: str, context: str) -> Action | None:
        value = await _first_match(self._tables[map_class], key)
        if value is None:
            return None
        try:
            action = parse_action(value, map_class=map_class, context=context)
        except ActionError as exc:
            self.warn(str(exc))
            return None
        if action.warning:
            self.warn(action.warning)
        return action


async def _first_match(tables: Sequence[Table], key: str) -> str | None:
    for table in tables:
        value = await table.get(key)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class LineResult:
    """What to write for one header or body line.

    ``output`` is the (possibly replaced) header text or body line, None when the action
    deletes it; ``prepend`` comes first, one line each; ``logs`` are maillog lines for the
    caller to write (service cleanup)."""

    output: bytes | None
    prepend: tuple[bytes, ...] = ()
    logs: tuple[str, ...] = ()
    action: Action | None = None


@dataclass(frozen=True)
class Verdict:
    """Message-level effects, for cleanup to enforce once the message is complete.

    ``reject`` wins over everything; then ``discard`` (250 to the client, nothing queued);
    ``hold`` queues into hold; ``redirect`` replaces all recipients and wins over ``filter``
    (the content_filter override); ``bcc`` recipients are added."""

    reject: RejectReply | None = None
    discard: bool = False
    hold: bool = False
    redirect: str | None = None
    filter: str | None = None
    bcc: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()


class MessageInspector:
    """The content checks of one message: feed it complete headers and body lines in order."""

    def __init__(self, checks: ContentChecks, facts: LogFacts) -> None:
        self.checks = checks
        self.facts = facts
        self.filtering = checks.enabled
        self._reject: RejectReply | None = None
        self._lookup_failed = False
        self._discard = False
        self._hold = False
        self._redirect: str | None = None
        self._filter: str | None = None
        self._bcc: list[str] = []

    @property
    def checks_body(self) -> bool:
        """Whether body lines may still be looked up (False once filtering stopped or when
        no body_checks table is configured): then ``body`` returns every line as it is."""
        return self.filtering and self.checks.has_body_checks

    async def header(self, event: HeaderEvent) -> LineResult:
        if not self.filtering:
            return LineResult(event.text)
        text = decode(event.text)
        map_class = self.checks.header_map(event.kind, text)
        try:
            action = await self.checks.check_header(event.kind, text)
        except TableError as exc:
            return self._lookup_problem(map_class, event.text, exc)
        return self.apply(action, event.text) if action else LineResult(event.text)

    async def body(self, event: BodyEvent) -> LineResult:
        """Check a body line in line_length_limit chunks, each at its own part offset."""
        if not self.filtering:
            return LineResult(event.line)
        size = self.checks.settings.limits.line_length_limit
        line = event.line
        chunks = [line[i : i + size] for i in range(0, len(line), size)] if size > 0 else []
        offset = event.offset
        results: list[LineResult] = []
        for chunk in chunks or [line]:
            results.append(await self._body_chunk(chunk, offset))
            offset += len(chunk) + 1
        kept = [r.output for r in results if r.output is not None]
        actions = [r.action for r in results if r.action is not None]
        return LineResult(
            b"".join(kept) if kept else None,
            tuple(p for r in results for p in r.prepend),
            tuple(log for r in results for log in r.logs),
            actions[-1] if actions else None,
        )

    async def _body_chunk(self, chunk: bytes, offset: int) -> LineResult:
        if not self.filtering:
            return LineResult(chunk)
        try:
            action = await self.checks.check_body_line(decode(chunk), offset)
        except TableError as exc:
            return self._lookup_problem("body_checks", chunk, exc)
        return self.apply(action, chunk) if action else LineResult(chunk)

    def apply(self, action: Action, content: bytes) -> LineResult:
        """Carry out one action on a header (context HEADER) or body line, as cleanup_act does."""
        verb, text = action.verb, action.text
        log = self._log_text(action, content)
        if verb == "REJECT":
            self._reject = action.reject_reply()
            self.filtering = False
            return LineResult(content, logs=(log(action.reason),), action=action)
        if verb in ("DISCARD", "PASS", "REDIRECT"):
            self.filtering = False
            if verb == "DISCARD":
                self._discard = True
            if verb == "REDIRECT":
                self._redirect = text
        elif verb == "HOLD":
            if self._hold or self._discard:
                return LineResult(content, action=action)  # logged once, as in Postfix
            self._hold = True
        elif verb == "FILTER":
            self._filter = text
        elif verb == "BCC":
            self._bcc.append(text)
        elif verb == "PREPEND":
            return LineResult(content, (encode(text),), (log(text),), action)
        elif verb == "REPLACE":
            return LineResult(encode(text), (), (log(text),), action)
        elif verb in ("IGNORE", "STRIP"):
            logs = (log(text),) if verb == "STRIP" else ()
            return LineResult(None, (), logs, action)
        elif verb in ("DUNNO", "OK"):
            return LineResult(content, action=action)
        return LineResult(content, logs=(log(text),), action=action)

    def _log_text(self, action: Action, content: bytes) -> Callable[[str], str]:
        word = LOG_WORD.get(action.verb, action.verb.lower())

        def line(text: str) -> str:
            return act_log_line(self.facts, word, action.context, decode(content), text)

        return line

    def _lookup_problem(self, map_class: str, content: bytes, exc: TableError) -> LineResult:
        self.checks.warn(f"{self.facts.queue_id}: {map_class} map lookup problem -- "
                         f"message not accepted, try again later ({exc})")
        self._lookup_failed = True
        return LineResult(content)

    def verdict(self, tracker: MimeTracker | None = None) -> Verdict:
        """The message-level outcome; pass the tracker to apply Postfix's MIME nesting limit."""
        reject = self._reject
        logs: tuple[str, ...] = ()
        overflow = tracker.nesting_exceeded if tracker is not None else None
        if reject is None and overflow is not None and self.checks.reports_nesting:
            reject = NESTING_FAILURE
            logs = (mime_error_log_line(self.facts, NESTING_FAILURE.text, decode(overflow)),)
        if reject is None and self._lookup_failed:
            reject = LOOKUP_FAILURE
        return Verdict(reject, self._discard, self._hold, self._redirect, self._filter,
                       tuple(self._bcc), logs)
