"""Receiving a message body after DATA: CRLF lines, dot handling, bounded memory.

Owns: the end-of-data rule (only ``CRLF . CRLF`` ends DATA: a bare LF or bare CR never does),
dot-unstuffing, what happens to a bare LF (refused, or with smtpd_forbid_bare_newline=no
taken as a line end that still cannot end DATA), lines longer than line_length_limit (cut
into pieces; a piece inside the header section is folded so the header stays one header),
and feeding each line to the cleanup MessageWriter.

Must not: reply to the client or enqueue; the caller does both with what ``receive`` returns.

Invariants: memory is one read chunk plus one line; a CleanupReject raised while writing
(hopcount, header limits) stops storing but reading goes on to the end of DATA, so the
client's next command is never taken from the middle of its message.
"""

from __future__ import annotations

import re
from typing import Protocol

from mailcore.cleanup import CleanupReject
from mailcore.smtpd.lines import BARE_LF, CRLF, CUT, EOF, LineReader

END = "end"  # CRLF . CRLF seen
_HEADER_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


class LineSink(Protocol):
    async def write_line(self, line: bytes) -> None: ...


class Feed:
    """Passes lines to a MessageWriter and remembers a refusal instead of raising it."""

    def __init__(self, writer: LineSink):
        self._writer = writer
        self.rejected: CleanupReject | None = None
        self._in_headers = True
        self._seen_header = False

    async def line(self, data: bytes, *, continued: bool) -> None:
        if self.rejected is not None:
            return
        if continued:
            if self._in_headers:
                data = b"\t" + data  # fold: the rest of an over-long header line
        elif self._in_headers:
            folded = data[:1] in (b" ", b"\t") and self._seen_header
            if _HEADER_START.match(data):
                self._seen_header = True
            elif not folded:
                self._in_headers = False
        try:
            await self._writer.write_line(data)
        except CleanupReject as exc:
            self.rejected = exc


async def receive(lines: LineReader, feed: Feed, *, limit: int, forbid_bare_lf: bool) -> str:
    """Read DATA content up to the end; END, EOF (connection lost) or BARE_LF (refused)."""
    previous = CRLF  # DATA's own CRLF precedes the first line
    while True:
        data, ending = await lines.next(limit)
        if ending == EOF:
            return EOF
        if ending == BARE_LF and forbid_bare_lf:
            return BARE_LF
        if previous == CUT:
            await feed.line(data, continued=True)
        else:
            if data == b".":
                # Only CRLF . CRLF ends DATA: a dot line after a bare-LF line is content.
                if ending == CRLF and previous == CRLF:
                    return END
            elif data[:1] == b".":
                data = data[1:]
            await feed.line(data, continued=False)
        previous = ending
