"""The SMTP client's wire: connections, server replies, commands and the DATA stream.

Owns: opening a TCP connection (the default ``Connector``), reading one possibly
multi-line reply with a bound on its size, writing bytes under a deadline, building the
MAIL FROM and RCPT TO command lines (with SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT),
parsing the EHLO keywords, and turning stored message lines into the DATA byte stream
(CRLF line ends, dot-stuffing, smtp_line_length_limit folding, the final ".").

Why not aiosmtplib's high-level client: 5.1.3 re-parses envelope addresses (an embedded CR
truncates an address and a CRLF injects a command), its ``data()`` wants the whole message
in memory, and it does not pipeline. This module writes each command exactly as built here
and refuses any command line that contains CR, LF or NUL.

Must not: decide what a reply means (smtp_proto.py and smtp_trouble.py do), or hold a
whole message in memory. Invariants: every read and write runs under ``asyncio.timeout``;
transport trouble surfaces only as ``StreamError`` (EOF/reset or timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from mailcore.address import xtext_encode
from mailcore.status import sanitize

MAX_REPLY_LINES = 100  # a longer reply is a broken or hostile server
MAX_LINE = 2048  # Postfix's line_length_limit for replies; longer lines are truncated
CHUNK = 64 * 1024
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_NOTIFY = re.compile(r"(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY))*)\Z", re.I)


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


# (address, port, timeout, bind address or "") -> an open stream pair
Connector = Callable[[str, int, float, str], Awaitable[tuple[asyncio.StreamReader, Writer]]]


class StreamError(Exception):
    """The connection broke (``timeout`` False) or a wait ran out (``timeout`` True)."""

    def __init__(self, timeout: bool):
        super().__init__("timeout" if timeout else "lost connection")
        self.timeout = timeout


@dataclass(frozen=True)
class ServerReply:
    code: int  # 0 when the server sent something that is not a reply
    lines: tuple[str, ...]  # each line as received, code included, undecoded bytes replaced

    @property
    def text(self) -> str:
        """All lines joined by a space and sanitised, as Postfix quotes a reply."""
        return sanitize(" ".join(self.lines))

    @property
    def dsn(self) -> str:
        """The enhanced status code of the first line, or ""."""
        first = self.lines[0][4:] if self.lines else ""
        match = _ENHANCED.match(first)
        return match.group(0) if match else ""


@dataclass(frozen=True)
class Features:
    esmtp: bool = False
    pipelining: bool = False
    size: bool = False
    size_limit: int = 0  # 0: none announced
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: bool = False
    helo_name: str = ""  # the first word of the EHLO reply


async def open_tcp(address: str, port: int, timeout: float, bind: str
                   ) -> tuple[asyncio.StreamReader, Writer]:
    """The default connector: a TCP connection under smtp_connect_timeout."""
    local = (bind, 0) if bind else None
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection(address, port, local_addr=local,
                                             family=_family(address), limit=CHUNK)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def connect_error_text(exc: BaseException) -> str:
    """Postfix words connect failures with strerror(): "Connection refused"."""
    if isinstance(exc, TimeoutError):
        return "Connection timed out"
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if errno else sanitize(str(exc)) or type(exc).__name__


class Wire:
    """One open connection to a server."""

    def __init__(self, reader: asyncio.StreamReader, writer: Writer):
        self._reader = reader
        self._writer = writer

    async def reply(self, timeout: float) -> ServerReply:
        lines: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self._line()
                    text = raw.decode("utf-8", "replace")
                    lines.append(text)
                    code = text[:3]
                    if not (code.isdigit() and text[3:4] in ("", " ", "-")):
                        return ServerReply(0, tuple(lines))
                    if text[3:4] != "-" or len(lines) >= MAX_REPLY_LINES:
                        return ServerReply(int(code), tuple(lines))
        except TimeoutError:
            raise StreamError(timeout=True) from None
        except (OSError, asyncio.IncompleteReadError):
            raise StreamError(timeout=False) from None

    async def _line(self) -> bytes:
        """One line without CRLF, truncated at MAX_LINE; EOF is an error."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            kept = await self._reader.readexactly(exc.consumed)
            while True:  # throw away the rest of the overlong line
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as more:
                    await self._reader.readexactly(more.consumed)
            line = kept
        return line.rstrip(b"\r\n")[:MAX_LINE]

    async def send(self, data: bytes, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(data)
                await self._writer.drain()
        except TimeoutError:
            raise StreamError(timeout=True) from None
        except OSError:
            raise StreamError(timeout=False) from None

    async def close(self, timeout: float) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await self._writer.wait_closed()


def command(text: str) -> bytes:
    """One command line; a CR, LF or NUL inside it would smuggle another command."""
    if any(ch in text for ch in "\r\n\0"):
        raise ValueError("command contains a line break or NUL")
    return text.encode("utf-8") + b"\r\n"


def parse_ehlo(reply: ServerReply) -> Features:
    found: dict[str, object] = {"esmtp": True}
    for index, line in enumerate(reply.lines):
        words = line[4:].replace("=", " ").split()
        if not words:
            continue
        if index == 0:
            found["helo_name"] = words[0]
            continue
        keyword = words[0].upper()
        if keyword == "SIZE":
            found["size"] = True
            if len(words) > 1 and words[1].isdigit():
                found["size_limit"] = int(words[1])
        elif keyword in ("PIPELINING", "8BITMIME", "SMTPUTF8", "DSN"):
            found[{"8BITMIME": "eightbitmime"}.get(keyword, keyword.lower())] = True
    if found.get("smtputf8"):
        found["eightbitmime"] = True  # Postfix: SMTPUTF8 without 8BITMIME is taken as both
    return Features(**found)  # type: ignore[arg-type]


def mail_command(sender: str, features: Features, *, size: int, body_type: str,
                 envid: str | None, ret: str | None, smtputf8: bool) -> str:
    parts = [f"MAIL FROM:<{sender}>"]
    if features.size:
        parts.append(f"SIZE={size}")
    if features.eightbitmime and body_type.upper() in ("8BITMIME", "BINARYMIME"):
        parts.append("BODY=8BITMIME")  # content goes out line by line: never BINARYMIME
    elif features.eightbitmime and body_type.upper() == "7BIT":
        parts.append("BODY=7BIT")
    if features.dsn:
        if envid:
            parts.append(f"ENVID={xtext_encode(envid)}")
        if ret and ret.upper() in ("FULL", "HDRS"):
            parts.append(f"RET={ret.upper()}")
    if features.smtputf8 and smtputf8:
        parts.append("SMTPUTF8")
    return " ".join(parts)


def rcpt_command(address: str, features: Features, *, notify: str | None,
                 orcpt: str | None, orig_rcpt: str | None) -> str:
    parts = [f"RCPT TO:<{address}>"]
    if features.dsn:
        value = orcpt_param(orcpt, orig_rcpt)
        if value:
            parts.append(f"ORCPT={value}")
        if notify and _NOTIFY.match(notify):
            parts.append(f"NOTIFY={notify.upper()}")
    return " ".join(parts)


def orcpt_param(orcpt: str | None, orig_rcpt: str | None) -> str:
    """ORCPT value: the queued "type;address" re-encoded, else the original recipient."""
    if orcpt and ";" in orcpt:
        addr_type, _, address = orcpt.partition(";")
    elif orig_rcpt:
        addr_type, address = ("rfc822" if orig_rcpt.isascii() else "utf-8"), orig_rcpt
    else:
        return ""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", addr_type):
        return ""
    if addr_type.lower() == "utf-8":
        return f"utf-8;{_utf8_addr_encode(address)}"
    if not address.isascii():
        return ""  # an rfc822 ORCPT cannot carry UTF-8
    return f"{addr_type};{xtext_encode(address)}"


def _utf8_addr_encode(text: str) -> str:
    """RFC 6533 utf-8-addr-xtext: UTF-8 as is; "+", "=", "\\", controls and spaces escaped."""
    return "".join(
        f"\\x{{{ord(ch):X}}}" if ch in "+=\\" or ord(ch) <= 0x20 or 0x7F <= ord(ch) <= 0x9F
        else ch for ch in text)


async def data_stream(lines: AsyncIterator[bytes], line_limit: int) -> AsyncIterator[bytes]:
    """Stored lines (no LF) as DATA chunks of about CHUNK bytes, ending with ".\\r\\n"."""
    buffer = bytearray()
    async for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]  # content stored with CRLF must not go out as CR CR LF
        if line.startswith(b"."):
            buffer += b"."
        buffer += fold(line, line_limit)
        if len(buffer) >= CHUNK:
            yield bytes(buffer)
            buffer.clear()
    buffer += b".\r\n"
    yield bytes(buffer)


def fold(line: bytes, limit: int) -> bytes:
    """A line longer than smtp_line_length_limit is broken with CRLF SPACE, as Postfix."""
    if limit <= 0 or len(line) <= limit:
        return line + b"\r\n"
    parts = [line[:limit]]
    rest = line[limit:]
    while rest:
        parts.append(b" " + rest[: limit - 1])
        rest = rest[limit - 1 :]
    return b"\r\n".join(parts) + b"\r\n"
