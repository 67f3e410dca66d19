"""One message on its way to the spool: lines in, queued form out.

Owns: streaming a message to the spool while it arrives: a message that stays within
``memory_limit`` bytes is kept in memory and comes out as ``CleanedMessage.content`` (no file
is made: creating and removing a file per message cost more than the rest of cleanup), a
larger one goes to the spool file in ``_FLUSH_SIZE`` pieces (memory: one piece plus one
header at most); driving the MIME tracker and the content checks for each header and body
line (a plain body with no checks to run bypasses both), rewriting primary header
addresses, removing Bcc from local submissions, adding missing Message-ID/Date/From (or
Resent- forms) where Postfix does, hopcount_limit and message_size_limit while receiving.

Must not: enqueue or decide routing (service.py does); speak SMTP.

Invariants: stored lines end in LF (delivery agents add CR where their protocol needs it); a
refusal found mid-stream waits for the end of DATA (the client is still sending) and then
raises ``CleanupReject``; the spool file is removed on every path that does not return it;
a finished message is either ``content`` (bytes) or the file at ``spool_path``, never both.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailcore.checks import (
    BodyEvent,
    ChecksSettings,
    ContentChecks,
    HeaderEvent,
    HeaderKind,
    HeadersEnd,
    LineResult,
    LogFacts,
    MessageInspector,
    MimeLimits,
    MimeTracker,
    Verdict,
)
from mailcore.cleanup.headers import header_name
from mailcore.tables import TableSet

# (header name, header text without the name) -> rewritten text; None when nothing applies.
HeaderRewrite = Callable[[str, str], Awaitable[str]]


class CleanupReject(Exception):
    """The message cannot be accepted; the caller replies ``code dsn text``."""

    def __init__(self, code: int, dsn: str, text: str):
        super().__init__(f"{code} {dsn} {text}")
        self.code, self.dsn, self.text = code, dsn, text


@dataclass(frozen=True)
class CleanupSettings:
    myhostname: str
    mail_name: str = "mailcore"
    header_size_limit: int = 102400
    hopcount_limit: int = 50
    message_size_limit: int = 10240000  # 0 = unlimited
    always_add_missing_headers: bool = False
    # Messages up to this many stored bytes stay in memory instead of a spool file; 0 means
    # always a file (mailcore's own knob, not a main.cf parameter).
    memory_limit: int = 0


@dataclass(frozen=True)
class CleanedMessage:
    spool_path: Path
    sender: str  # the envelope sender after rewriting
    size: int
    message_id: str | None
    received_count: int
    verdict: Verdict  # content-check effects: discard, hold, redirect, filter, bcc
    logs: tuple[str, ...] = ()  # content-check log lines, already formatted
    content: bytes | None = None  # the message when it was kept in memory (no spool file)


_FLUSH_SIZE = 256 * 1024  # spool file writes happen in pieces of about this size

_REWRITTEN_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
    "resent-reply-to", "resent-to", "resent-cc", "resent-bcc", "return-receipt-to",
    "errors-to",
})


class MessageWriter:
    """Feed lines with ``await write_line``, then ``await finish()`` (or ``abort()``)."""

    def __init__(self, settings: CleanupSettings, spool_path: Path, *, queue_id: str,
                 sender: str, local_submission: bool, first_headers: list[bytes],
                 inspector: MessageInspector, tracker: MimeTracker, full_name: str = "",
                 rewrite_header: HeaderRewrite | None = None):
        self._settings = settings
        self.spool_path = spool_path
        self._queue_id = queue_id
        self._sender = sender
        self._local = local_submission
        self._full_name = full_name
        self._inspector = inspector
        self._tracker = tracker
        self._rewrite_header = rewrite_header
        self._buffer = bytearray()  # stored bytes not yet in the spool file
        self._stored = 0  # bytes stored so far (memory and file)
        self._file: BinaryIO | None = None
        self._made_file = False
        if settings.memory_limit <= 0:
            self._open_file()
        self._size = 0
        self.too_big = False
        self._rejected: CleanupReject | None = None
        self._present: set[str] = set()
        self._received = 0
        self._message_id: str | None = None
        self._logs: list[str] = []
        self._first_headers = first_headers
        self._plain_body = False  # see _feed

    async def start(self) -> None:
        """Feed cleanup's own headers first: they count toward hopcount and meet the checks."""
        for line in self._first_headers:
            await self._feed(line)

    # --- receiving --------------------------------------------------------------------
    async def write_line(self, line: bytes) -> None:
        """One message line, dot-unstuffed, without its line terminator."""
        self._size += len(line) + 2  # counted as received (CRLF), like SIZE=
        limit = self._settings.message_size_limit
        if limit and self._size > limit:
            self.too_big = True
        if self.too_big or self._rejected:
            return  # keep reading to the end of DATA, store nothing more
        if self._plain_body:
            self._write(line)
            return
        await self._feed(line)

    async def _feed(self, line: bytes) -> None:
        tracker = self._tracker
        for event in tracker.feed(line):
            await self._event(event)
        # In the body with no multipart boundary open, the tracker can only return each line
        # as a BodyEvent from now on; without body checks those are stored as they are.
        self._plain_body = (not tracker.in_headers and tracker.depth == 0
                            and not self._inspector.checks_body)

    async def _event(self, event: object) -> None:
        if isinstance(event, HeaderEvent):
            await self._header(event)
        elif isinstance(event, HeadersEnd):
            self._end_of_primary_headers()
        elif isinstance(event, BodyEvent):
            self._emit(await self._inspector.body(event))

    async def _header(self, event: HeaderEvent) -> None:
        primary = event.kind == HeaderKind.PRIMARY
        name = header_name(event.text)
        if primary and name == "received":
            self._received += 1
        result = await self._inspector.header(event)
        for line in result.prepend:
            self._write(line)
        self._logs.extend(result.logs)
        if result.output is None or (primary and self._local and name == "bcc"):
            return
        text = result.output
        if primary:
            self._present.add(name)
            text = await self._rewritten(name, text)
            if name == "message-id":
                self._message_id = _message_id_value(text)
        for physical in text.split(b"\n"):
            self._write(physical)

    async def _rewritten(self, name: str, text: bytes) -> bytes:
        if self._rewrite_header is None or name not in _REWRITTEN_HEADERS:
            return text
        label, _, value = text.partition(b":")
        decoded = value.decode("utf-8", "surrogateescape")
        new_value = await self._rewrite_header(name, decoded)
        if new_value == decoded:
            return text
        return label + b":" + new_value.encode("utf-8", "surrogateescape")

    def _end_of_primary_headers(self) -> None:
        if self._received >= self._settings.hopcount_limit:
            self._rejected = CleanupReject(554, "5.4.6", "Too many hops")
            return
        for header in self._missing_headers():
            self._write(header)

    def _missing_headers(self) -> list[bytes]:
        if not (self._local or self._settings.always_add_missing_headers):
            return []
        resent = any(name.startswith("resent-") for name in self._present)
        prefix = "resent-" if resent else ""
        label = "Resent-" if resent else ""
        added: list[bytes] = []
        if prefix + "message-id" not in self._present:
            message_id = self._new_message_id()
            self._message_id = self._message_id or message_id
            added.append(f"{label}Message-ID: <{message_id}>".encode())
        if prefix + "date" not in self._present:
            added.append(f"{label}Date: {email.utils.formatdate(localtime=True)}".encode())
        if prefix + "from" not in self._present:
            added.append(f"{label}From: {self._from_text()}".encode())
        return added

    def _new_message_id(self) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return f"{stamp}.{self._queue_id}@{self._settings.myhostname}"

    def _from_text(self) -> str:
        sender = self._sender or "MAILER-DAEMON"
        if self._full_name:
            return email.utils.formataddr((self._full_name, sender))
        return sender

    def _emit(self, result: LineResult) -> None:
        for line in result.prepend:
            self._write(line)
        self._logs.extend(result.logs)
        if result.output is not None:
            self._write(result.output)

    def _write(self, line: bytes) -> None:
        if self._rejected is None:
            buffer = self._buffer
            buffer += line
            buffer += b"\n"
            self._stored += len(line) + 1
            if self._file is not None:
                if len(buffer) >= _FLUSH_SIZE:
                    self._flush_buffer()
            elif len(buffer) > self._settings.memory_limit:
                self._open_file()
                self._flush_buffer()

    def _open_file(self) -> None:
        fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._made_file = True
        self._file = os.fdopen(fd, "wb")

    def _flush_buffer(self) -> None:
        assert self._file is not None
        self._file.write(self._buffer)
        self._buffer.clear()

    # --- ending ---------------------------------------------------------------------------
    async def finish(self) -> CleanedMessage:
        """Close the spool file; raise CleanupReject for a message that must be refused."""
        if self.too_big:
            self.abort()
            raise CleanupReject(552, "5.3.4", "Message size exceeds fixed limit")
        for event in self._tracker.finish():
            await self._event(event)
        verdict = self._inspector.verdict(self._tracker)
        self._logs.extend(verdict.logs)
        rejection = self._rejected
        if rejection is None and verdict.reject is not None:
            reject = verdict.reject
            rejection = CleanupReject(reject.code, reject.dsn, reject.text)
        if rejection is not None:
            self.abort()
            raise rejection
        content: bytes | None = None
        if self._file is None:
            content = bytes(self._buffer)
        else:
            self._flush_buffer()
            self._file.close()
        self._buffer = bytearray()
        return CleanedMessage(self.spool_path, self._sender, self._stored, self._message_id,
                              self._received, verdict, tuple(self._logs), content)

    @property
    def logs(self) -> tuple[str, ...]:
        """Content-check log lines so far (a refused message's reject line among them)."""
        return tuple(self._logs)

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._made_file:
            self.spool_path.unlink(missing_ok=True)


async def open_writer(settings: CleanupSettings, spool_path: Path, *, queue_id: str,
                      sender: str, local_submission: bool, first_headers: list[bytes],
                      full_name: str = "", checks: ContentChecks | None = None,
                      facts: LogFacts | None = None,
                      rewrite_header: HeaderRewrite | None = None) -> MessageWriter:
    """A started MessageWriter; without ``checks`` no content inspection happens."""
    checks = checks or ContentChecks(
        ChecksSettings(limits=MimeLimits(header_size_limit=settings.header_size_limit)),
        TableSet())
    facts = facts or LogFacts(queue_id=queue_id, origin="local", sender=sender)
    writer = MessageWriter(
        settings, spool_path, queue_id=queue_id, sender=sender,
        local_submission=local_submission, first_headers=first_headers,
        inspector=checks.inspector(facts), tracker=checks.tracker(), full_name=full_name,
        rewrite_header=rewrite_header,
    )
    try:
        await writer.start()
    except BaseException:
        writer.abort()
        raise
    return writer


def _message_id_value(text: bytes) -> str | None:
    value = b" ".join(part.strip() for part in text.split(b"\n"))
    return value.partition(b":")[2].strip().decode("utf-8", "replace").strip("<>") or None
