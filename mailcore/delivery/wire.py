"""The SMTP/LMTP client side of the wire: commands out, replies in, message content out.

Owns: writing one command line with CRLF, reading one (possibly multi-line) reply into code,
enhanced status and text, and streaming stored message content as dot-stuffed CRLF lines
ending in "." — each step under its own ``asyncio.timeout``. Reply text is parsed and
classified by mailcore.status; this module only frames it.

Must not: decide what a reply means for a recipient (the agents do), resolve names, or hold
the whole message in memory (content goes out in bounded chunks as it is read).

Invariants: a command never contains CR or LF (refused before anything is written); every
failure of the peer surfaces as a ``WireError`` subclass — ``PeerClosed`` (EOF or reset),
``WireTimeout``, ``MalformedReply`` (the stream cannot be trusted to stay in step after it);
a timeout of 0 or less means no limit, as Postfix's ``*_timeout = 0``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mailcore.status import Reply, classify, default_dsn, parse_reply, sanitize

MAX_REPLY_LINES = 1000  # a reply longer than this is a broken or hostile peer
MAX_LINE = 4096  # bytes per reply line; RFC 5321 says 512, servers send more
CHUNK = 64 * 1024  # content bytes per write + drain
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|\r?\n|$)")


class WireError(Exception):
    """The conversation with the peer broke; ``str()`` is safe to show (no peer bytes)."""


class PeerClosed(WireError):
    pass


class WireTimeout(WireError):
    pass


class MalformedReply(WireError):
    def __init__(self, detail: str, line: bytes = b""):
        super().__init__(detail)
        self.line = sanitize(line.rstrip(b"\r\n").decode("utf-8", "replace"))


@dataclass(frozen=True)
class WireReply:
    """One server reply: ``lines`` are the texts after ``ddd-``/``ddd ``, in order."""

    code: int
    lines: tuple[str, ...]

    @property
    def parsed(self) -> Reply:
        return parse_reply(self.code, "\n".join(self.lines))

    @property
    def dsn(self) -> str:
        """The server's enhanced status code, else the X.0.0 Postfix assumes."""
        return self.parsed.dsn or default_dsn(self.code)

    @property
    def kind(self) -> str:
        """'success', 'temporary' or 'permanent' by mailcore.status.classify."""
        return classify(self.code, self.parsed.dsn)

    @property
    def text(self) -> str:
        """The reply as Postfix quotes it in logs and bounces: "550 5.1.1 <u@x> unknown"."""
        return sanitize(" ".join(f"{self.code} {line}".strip() for line in self.lines))

    def keywords(self) -> dict[str, str]:
        """EHLO/LHLO extensions (all lines but the first): upper-case keyword -> its args."""
        found: dict[str, str] = {}
        for line in self.lines[1:]:
            keyword, _, args = line.strip().partition(" ")
            if keyword:
                found[keyword.upper()] = args.strip()
        return found


def parse_reply_line(raw: bytes) -> tuple[int, bool, str]:
    """(code, is_last, text) of one reply line; MalformedReply when it is not ``ddd[ -]``."""
    match = _REPLY_LINE.match(raw)
    if not match:
        raise MalformedReply("malformed reply line", raw)
    last = match.group(2) != b"-"
    text = raw[match.end():].rstrip(b"\r\n") if match.group(2) in (b" ", b"-") else b""
    return int(match.group(1)), last, text.decode("utf-8", "replace")


def _limit(seconds: float) -> float | None:
    return seconds if seconds > 0 else None


def stuffed_lines(line: bytes, line_limit: int = 0) -> list[bytes]:
    """One stored line as wire lines: a trailing CR dropped, a leading "." doubled, and a
    line longer than ``line_limit`` broken by CRLF SPACE (Postfix's smtp_line_length_limit)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    pieces = [line]
    if line_limit > 1 and len(line) > line_limit:
        pieces = [line[:line_limit]]
        rest = line[line_limit:]
        while rest:
            pieces.append(b" " + rest[: line_limit - 1])
            rest = rest[line_limit - 1:]
    if pieces[0].startswith(b"."):
        pieces[0] = b"." + pieces[0]
    return [piece + b"\r\n" for piece in pieces]


class Wire:
    """One connection's stream pair; the caller owns connecting and gives up on errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def read_reply(self, timeout: float) -> WireReply:
        """Read one complete reply; the code of its last line is the reply code."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(_limit(timeout)):
                while len(lines) < MAX_REPLY_LINES:
                    code, last, text = parse_reply_line(await self._readline())
                    lines.append(text)
                    if last:
                        return WireReply(code, tuple(lines))
        except TimeoutError:
            raise WireTimeout("timed out") from None
        raise MalformedReply(f"reply longer than {MAX_REPLY_LINES} lines")

    async def _readline(self) -> bytes:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise PeerClosed("connection closed") from None
        except asyncio.LimitOverrunError:
            raise MalformedReply(f"reply line longer than {MAX_LINE} bytes") from None
        except (ConnectionError, OSError) as exc:
            raise PeerClosed(type(exc).__name__) from None
        if len(raw) > MAX_LINE:
            raise MalformedReply(f"reply line longer than {MAX_LINE} bytes", raw[:80])
        return raw

    async def send(self, data: bytes, timeout: float) -> None:
        try:
            async with asyncio.timeout(_limit(timeout)):
                self.writer.write(data)
                await self.writer.drain()
        except TimeoutError:
            raise WireTimeout("timed out") from None
        except (ConnectionError, OSError) as exc:
            raise PeerClosed(type(exc).__name__) from None

    async def command(self, line: str, timeout: float) -> None:
        await self.send(command_bytes(line), timeout)

    async def send_content(self, lines: AsyncIterator[bytes], timeout: float,
                           line_limit: int = 0) -> None:
        """Stream the content and the final "."; ``timeout`` bounds each chunk's write."""
        buffer = bytearray()
        async for line in lines:
            for piece in stuffed_lines(line, line_limit):
                buffer += piece
            if len(buffer) >= CHUNK:
                await self.send(bytes(buffer), timeout)
                buffer.clear()
        buffer += b".\r\n"
        await self.send(bytes(buffer), timeout)

    async def close(self) -> None:
        """Close without waiting long: a peer that will not close is not our problem."""
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            pass


def command_bytes(line: str) -> bytes:
    """A command as sent: UTF-8 (SMTPUTF8 addresses) plus CRLF; CR/LF inside is refused."""
    if "\r" in line or "\n" in line:
        raise ValueError("command contains CR or LF")
    return line.encode("utf-8") + b"\r\n"
