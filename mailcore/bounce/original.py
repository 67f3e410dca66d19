"""How much of the original message a notice returns, taken from a stream of content chunks.

Owns: Postfix's rule for the third part of a notice — the whole message (RET=FULL) when it
fits bounce_size_limit, otherwise only its header block (RET=HDRS, delay and success notices,
postmaster copies, and any message larger than the limit, so MIME structure is never cut).

Must not: read the queue itself; callers feed chunks (sync or async) and stop when told.

Invariants: at most ``bounce_size_limit`` bytes of a full original are ever held, and a
header block is cut at a header boundary once it passes the same limit (mailcore's own
guard: Postfix returns every header line); stored content uses LF line ends.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Iterable

from mailcore.bounce.policy import FULL, HDRS

# A header field starts with printable non-colon characters and a colon (RFC 5322 2.2).
_HEADER_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def returned_mode(ret: str, content_size: int, limit: int) -> str:
    """FULL or HDRS: a message larger than the limit comes back as headers only."""
    if ret == FULL and limit > 0 and (content_size <= 0 or content_size > limit):
        return HDRS
    return ret


class OriginalCollector:
    """Feed chunks until ``feed`` returns True; ``result`` is the part-3 body."""

    def __init__(self, mode: str, limit: int):
        self.mode = mode
        self.limit = limit
        self._buf = bytearray()
        self._scan = 0  # start of the first header line not yet checked
        self._done = False
        self.truncated = False

    def feed(self, chunk: bytes) -> bool:
        if self._done:
            return True
        self._buf += chunk
        if self.mode == FULL:
            if self.limit > 0 and len(self._buf) > self.limit:
                # Only when the stored size was wrong: never hold more than the limit.
                del self._buf[self._last_line_end(self.limit):]
                self.truncated = self._done = True
            return self._done
        end = self._header_end()
        if end is not None:
            del self._buf[end:]
            self._done = True
        elif self.limit > 0 and len(self._buf) > self.limit:
            del self._buf[self._header_boundary(self.limit):]
            self.truncated = self._done = True
        return self._done

    def result(self) -> bytes:
        data = bytes(self._buf)
        if self.mode == HDRS and not self._done:
            end = self._header_end(final=True)
            data = data[:end] if end is not None else data
        if data and not data.endswith(b"\n"):
            data += b"\n"
        return data

    def _header_end(self, *, final: bool = False) -> int | None:
        """Offset just past the last header line, once a non-header line has been seen."""
        pos = self._scan
        buf = self._buf
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if final and pos < len(buf) and self._is_header(bytes(buf[pos:]), pos):
                    return len(buf)
                return pos if final else None
            if not self._is_header(bytes(buf[pos:nl]), pos):
                return pos
            pos = self._scan = nl + 1

    @staticmethod
    def _is_header(line: bytes, pos: int) -> bool:
        if line[:1] in (b" ", b"\t"):
            return pos > 0  # a continuation needs a field before it
        return bool(_HEADER_START.match(line))

    def _header_boundary(self, limit: int) -> int:
        """The start of the last header field that begins within ``limit`` bytes."""
        cut = self._last_line_end(limit)
        while cut > 0 and self._buf[cut:cut + 1] in (b" ", b"\t"):
            cut = self._buf.rfind(b"\n", 0, cut - 1) + 1
        return cut

    def _last_line_end(self, limit: int) -> int:
        nl = self._buf.rfind(b"\n", 0, limit)
        return nl + 1 if nl >= 0 else 0


def collect_original(chunks: Iterable[bytes], mode: str, limit: int) -> bytes:
    collector = OriginalCollector(mode, limit)
    for chunk in chunks:
        if collector.feed(chunk):
            break
    return collector.result()


async def acollect_original(chunks: AsyncIterable[bytes], mode: str, limit: int) -> bytes:
    """The async twin: stops reading the queue as soon as enough has been seen."""
    collector = OriginalCollector(mode, limit)
    iterator = chunks.__aiter__()
    try:
        async for chunk in iterator:
            if collector.feed(chunk):
                break
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return collector.result()
