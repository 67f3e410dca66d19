"""header_checks/body_checks actions: parsing a table result, and the log lines they produce.

Owns: the action words of header_checks(5) as Postfix's cleanup(8) accepts them (REJECT,
WARN, INFO, FILTER, PASS, DISCARD, HOLD, PREPEND, REPLACE, REDIRECT, BCC, STRIP, IGNORE,
DUNNO, OK), the checks Postfix makes on each action's argument, the REJECT reply (default
enhanced status 5.7.1, "message content rejected"), and the maillog line format of
cleanup_act_log ("QUEUEID: reject: header ... from ORIGIN; from=<..> to=<..> ...: text").

Must not: look anything up, keep per-message state, or write logs (it returns text).

Invariants: ``parse_action`` either returns a valid Action or raises ActionError naming the
table parameter; Postfix logs that as a warning and carries on as if nothing matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailcore.checks.mime import header_name_length
from mailcore.errors import TableError

HEADER = "header"
BODY = "body"

VERBS: frozenset[str] = frozenset({
    "REJECT", "WARN", "INFO", "FILTER", "PASS", "DISCARD", "HOLD", "PREPEND", "REPLACE",
    "REDIRECT", "BCC", "STRIP", "IGNORE", "DUNNO", "OK",
})
# Actions that stop all further header/body inspection of the message.
FINAL_VERBS: frozenset[str] = frozenset({"REJECT", "DISCARD", "REDIRECT", "PASS"})

DEFAULT_REJECT_DSN = "5.7.1"
DEFAULT_REJECT_TEXT = "message content rejected"
_DSN = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")
_LOG_CONTENT_LIMIT = 200


class ActionError(TableError):
    """A table result that is not a usable action; the message names the parameter."""


@dataclass(frozen=True)
class RejectReply:
    """What the client is told at the end of DATA: ``code dsn text``."""

    code: int
    dsn: str
    text: str

    @property
    def temporary(self) -> bool:
        return self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.dsn} {self.text}"


@dataclass(frozen=True)
class Action:
    """One parsed table result. ``text`` is everything after the action word."""

    verb: str
    text: str
    map_class: str
    context: str  # HEADER or BODY
    warning: str = ""  # a Postfix warning that goes with a still-valid action

    @property
    def stops_inspection(self) -> bool:
        return self.verb in FINAL_VERBS

    @property
    def reason(self) -> str:
        """REJECT's "dsn text": the given text with 5.7.1 in front unless it has a code."""
        if not self.text:
            return f"{DEFAULT_REJECT_DSN} {DEFAULT_REJECT_TEXT}"
        reason = self.text if _DSN.match(self.text) else f"{DEFAULT_REJECT_DSN} {self.text}"
        # A 2.x.x code cannot reject: Postfix turns it into a 4.x.x (temporary) one.
        return reason if reason[0] in "45" else "4" + reason[1:]

    def reject_reply(self) -> RejectReply:
        """The SMTP reply for REJECT: 550 for 5.x.x, 451 for 4.x.x, as smtpd sends them."""
        dsn, _, text = self.reason.partition(" ")
        return RejectReply(451 if dsn.startswith("4") else 550, dsn, text)


def parse_action(value: str, *, map_class: str, context: str) -> Action:
    """Split ``VERB optional text`` and check the argument as Postfix's cleanup_act does."""
    word = re.match(r"[^ \t]*", value)
    assert word is not None
    verb = word.group().upper()
    text = value[word.end() :].lstrip()
    if verb not in VERBS:
        raise ActionError(f"unknown command in {map_class} map: {value}")
    _check_argument(verb, text, map_class, context)
    warning = ""
    if verb == "REJECT" and text[:1] == "2" and _DSN.match(text):
        warning = f"bad DSN action in {text} -- need 4.x.x or 5.x.x"
    return Action(verb, text, map_class, context, warning)


def _check_argument(verb: str, text: str, map_class: str, context: str) -> None:
    if verb == "FILTER":
        if not text:
            raise ActionError(f"missing FILTER command argument in {map_class} map")
        if ":" not in text:
            raise ActionError(
                f"bad FILTER command {text} in {map_class} -- need transport:destination")
    elif verb in ("PREPEND", "REPLACE"):
        if not text:
            raise ActionError(f"{verb} action without text in {map_class} map")
        if context == HEADER and not header_name_length(text.encode("utf-8", "surrogateescape")):
            raise ActionError(
                f'bad {verb} header text "{text}" in {map_class} map -- '
                f'need "headername: headervalue"')
    elif verb == "REDIRECT" and "@" not in text:
        raise ActionError(
            f'bad REDIRECT target "{text}" in {map_class} map -- need user@domain')
    elif verb == "BCC" and "@" not in text:
        raise ActionError(f'bad BCC address "{text}" in {map_class} map -- need user@domain')


@dataclass(frozen=True)
class LogFacts:
    """What cleanup knows about the message when it logs an action.

    ``origin`` is Postfix's log origin: ``name[address]`` for a network client, ``local`` for
    local submission. ``sender`` None omits ``from=<>``; ``recipient`` is the first one."""

    queue_id: str
    origin: str = "unknown"
    sender: str | None = None
    recipient: str | None = None
    protocol: str | None = None
    helo: str | None = None


def printable(text: str) -> str:
    """Postfix's log sanitising: control characters and undecodable bytes become '?'."""
    return "".join(
        "?" if (ord(c) < 0x20 or ord(c) == 0x7F or 0xDC80 <= ord(c) <= 0xDCFF) else c
        for c in text
    )


def act_log_line(facts: LogFacts, action: str, context: str, content: str, text: str) -> str:
    """``QUEUEID: ACTION: CONTEXT CONTENT from ORIGIN; from=<S> to=<R> proto=P helo=<H>: TEXT``.

    ``action`` is the logged word (reject, warning, info, filter, pass, discard, hold,
    prepend, replace, redirect, bcc, strip); ``content`` is cut at 200 characters."""
    shown = content[:_LOG_CONTENT_LIMIT]
    line = f"{facts.queue_id}: {action}: {context} {shown} from {facts.origin};"
    if facts.sender is not None:
        line += f" from=<{facts.sender}>"
    if facts.recipient is not None:
        line += f" to=<{facts.recipient}>"
    if facts.protocol:
        line += f" proto={facts.protocol}"
    if facts.helo:
        line += f" helo=<{facts.helo}>"
    if text:
        line += f": {text}"
    return printable(line)


def mime_error_log_line(facts: LogFacts, error: str, content: str) -> str:
    """The line cleanup logs when the MIME structure itself is refused (nesting too deep)."""
    return printable(
        f"{facts.queue_id}: reject: mime-error {error}: {content[:100]} from {facts.origin};"
        f" from=<{facts.sender or ''}> to=<{facts.recipient or 'unknown'}>"
    )


LOG_WORD: dict[str, str] = {
    "REJECT": "reject", "WARN": "warning", "INFO": "info", "FILTER": "filter", "PASS": "pass",
    "DISCARD": "discard", "HOLD": "hold", "PREPEND": "prepend", "REPLACE": "replace",
    "REDIRECT": "redirect", "BCC": "bcc", "STRIP": "strip",
}
