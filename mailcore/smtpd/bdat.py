"""Receiving a message with BDAT (RFC 3030 CHUNKING): exact-size chunks, split into lines.

Owns: the BDAT argument syntax (``count [LAST]``), reading exactly ``count`` octets from the
connection (whatever is already buffered first, then the stream), and splitting the chunk
octets into the content lines the cleanup writer stores: only CRLF ends a line (also when
the CR and the LF arrive in different chunks), a bare CR is data, a bare LF is refused or
taken as a line end by smtpd_forbid_bare_newline exactly as in DATA, lines longer than
line_length_limit are passed on in pieces (``continued``) as in DATA.

Must not: reply to the client, decide sequencing, or enqueue (session.py and policy.py do);
interpret chunk octets in any way other than as message content: there is no dot-stuffing
and no end marker, and no chunk octet is ever read as a command.

Invariants: memory is one read piece (at most one stream read) plus one line piece of at
most line_length_limit + 1 octets, whatever the chunk size; ``receive_chunk`` consumes
exactly the chunk's octets or reports that the input ended (or a refused bare LF, after
which the session closes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailcore.smtpd.data import Feed
from mailcore.smtpd.lines import BARE_LF, EOF, LineReader

OK = "ok"  # the whole chunk was consumed
_CHUNK_SIZE = re.compile(r"[0-9]{1,18}")  # larger counts cannot be an off_t (Postfix refuses)


@dataclass(frozen=True)
class BdatCommand:
    size: int
    last: bool


def parse_bdat(arg: str) -> BdatCommand | None:
    """``BDAT`` arguments, or None when they are not ``chunk-size [SP "LAST"]``."""
    words = arg.split()
    if not 1 <= len(words) <= 2 or not _CHUNK_SIZE.fullmatch(words[0]):
        return None
    if len(words) == 2 and words[1].upper() != "LAST":
        return None
    return BdatCommand(int(words[0]), len(words) == 2)


class ChunkReader(LineReader):
    """The session's LineReader, able to hand out raw octets for BDAT as well.

    It shares the line reader's buffer because a pipelining client's chunk octets often
    arrive in the same read as the BDAT command line. It relies on LineReader's buffer
    fields (``_buf``, ``_pos``, ``_eof``, ``_read``, ``_chunk``); a ``take`` method on
    LineReader itself would remove that coupling."""

    async def take(self, n: int) -> bytes:
        """Up to ``n`` raw octets, at least one unless the input ended (then b"")."""
        if self._pos < len(self._buf):
            piece = self._buf[self._pos : self._pos + n]
            self._pos += len(piece)
            return piece
        if self._eof:
            return b""
        # Read no further than the chunk: what follows is commands, read as lines later.
        data = await self._read(min(n, self._chunk))
        if not data:
            self._eof = True
        return data


class LineSplitter:
    """Chunk octets in, content lines out to a Feed, across chunk boundaries."""

    def __init__(self, feed: Feed, *, limit: int, forbid_bare_lf: bool) -> None:
        self._feed = feed
        self._limit = max(limit, 1)
        self._forbid_bare_lf = forbid_bare_lf
        self._partial = bytearray()  # the current line so far (may end in a CR)
        self._continued = False  # pieces of the current line were passed on already

    async def write(self, data: bytes) -> bool:
        """Split ``data``; False when a bare LF is refused (smtpd_forbid_bare_newline)."""
        pos = 0
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                self._partial += data[pos:]
                await self._cut()
                return True
            line = bytes(self._partial) + data[pos:end]
            self._partial.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            elif self._forbid_bare_lf:
                return False
            await self._line(line)
            pos = end + 1

    async def close(self) -> None:
        """End of the message: a last line without CRLF is stored as a line."""
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            await self._line(line)

    async def _line(self, line: bytes) -> None:
        limit = self._limit
        while len(line) > limit:
            await self._piece(line[:limit])
            line = line[limit:]
        await self._feed.line(line, continued=self._continued)
        self._continued = False

    async def _cut(self) -> None:
        """Pass on pieces of an unfinished over-long line; a final CR waits for its LF."""
        limit, partial = self._limit, self._partial
        while len(partial) - (partial[-1:] == b"\r") > limit:
            await self._piece(bytes(partial[:limit]))
            del partial[:limit]

    async def _piece(self, piece: bytes) -> None:
        await self._feed.line(piece, continued=self._continued)
        self._continued = True


async def receive_chunk(reader: ChunkReader, size: int, splitter: LineSplitter | None) -> str:
    """Consume exactly ``size`` octets: into ``splitter``, or discarded when it is None.

    OK, EOF (the connection ended first) or BARE_LF (refused; the rest is not read)."""
    left = size
    while left:
        piece = await reader.take(left)
        if not piece:
            return EOF
        left -= len(piece)
        if splitter is not None and not await splitter.write(piece):
            return BARE_LF
    return OK
