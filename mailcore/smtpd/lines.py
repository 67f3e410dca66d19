"""Reading SMTP lines from a byte stream in bounded pieces.

Owns: splitting client input into lines on CRLF, telling the caller how each line ended
(CRLF, bare LF, cut because it was too long, or end of input), so that command and DATA
policy (bare LF, dot handling, long lines) is decided by the caller, never by the splitter.

Must not: interpret commands or message content; hold more than one read chunk plus one
line in memory.

Invariants: a bare CR is data and never ends a line; the CR of a CRLF is never split from
its LF across two pieces; a piece returned with ``CUT`` is at most ``limit`` bytes and the
rest of that line follows in the next call(s).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

CRLF = "crlf"
BARE_LF = "lf"
CUT = "cut"  # the line was longer than the limit: this is a piece, the line goes on
EOF = "eof"  # input ended; the bytes returned (maybe empty) had no line terminator

READ_CHUNK = 64 * 1024


class LineReader:
    """Lines from ``read(n)`` (a StreamReader's read, or a test's fake)."""

    def __init__(self, read: Callable[[int], Awaitable[bytes]], chunk: int = READ_CHUNK):
        self._read = read
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self._eof = False

    @property
    def pending(self) -> bool:
        """Whether unread input is already buffered (pipelined commands or data)."""
        return self._pos < len(self._buf)

    def discard_pending(self) -> None:
        """Forget buffered input (after STARTTLS the plaintext remainder must go)."""
        self._buf, self._pos = b"", 0

    async def next(self, limit: int) -> tuple[bytes, str]:
        """The next line without its terminator, and how it ended."""
        while True:
            buf, pos = self._buf, self._pos
            end = buf.find(b"\n", pos, pos + limit + 2)
            if end >= 0:
                self._pos = end + 1
                if end > pos and buf[end - 1] == 0x0D:
                    if end - 1 - pos <= limit:
                        return buf[pos : end - 1], CRLF
                elif end - pos <= limit:
                    return buf[pos:end], BARE_LF
                self._pos = pos  # terminator found but the line is too long: cut below
            if len(buf) - pos >= limit + 2:
                # No LF within limit + 2 bytes: the line is too long whatever follows.
                cut = pos + limit
                if buf[cut - 1] == 0x0D and limit > 1:
                    cut -= 1  # keep a CR with what follows: it may be the CR of CRLF
                self._pos = cut
                return buf[pos:cut], CUT
            if self._eof:
                self._buf, self._pos = b"", 0
                return buf[pos:], EOF
            data = await self._read(self._chunk)
            if not data:
                self._eof = True
                continue
            self._buf = buf[pos:] + data
            self._pos = 0
