"""A scriptable SMTP next hop on loopback for delivery tests (plain asyncio streams).

``Script`` says what the peer answers at each stage: the greeting, EHLO (with the extensions
it advertises), HELO, MAIL, each RCPT (by address), DATA and the end of data. A reply is a
string (several lines separated by "\\n", each a complete reply line) or ``None``, which
closes the connection at that stage without answering. Everything the client sends is
recorded byte for byte: ``Peer.raw`` (per session), ``Peer.commands`` (each command line
with its CRLF) and ``Peer.messages`` (the DATA bytes as received, dot-stuffing included,
without the final ".\\r\\n").

It is deliberately not aiosmtpd: a test must see exactly the bytes a client sent, including
ones a real server would refuse to parse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

Reply = str | None  # None: drop the connection instead of answering

DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE 10240000", "8BITMIME", "SMTPUTF8", "DSN",
                      "ENHANCEDSTATUSCODES")


@dataclass(frozen=True)
class Script:
    name: str = "peer.test"
    greeting: Reply = "220 peer.test ESMTP test peer"
    ehlo: Reply = "auto"  # "auto": 250 with ``extensions``
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    helo: Reply = "250 peer.test"
    mail: Reply = "250 2.1.0 Ok"
    rcpt: Mapping[str, Reply] = field(default_factory=dict)  # by address inside <>
    rcpt_default: Reply = "250 2.1.5 Ok"
    data: Reply = "354 End data with <CR><LF>.<CR><LF>"
    dot: Reply = "250 2.0.0 Ok: queued as PEER1"

    def ehlo_reply(self) -> Reply:
        if self.ehlo != "auto":
            return self.ehlo
        lines = [f"250-{self.name}"] + [f"250-{ext}" for ext in self.extensions]
        return "\n".join([*lines[:-1], "250 " + lines[-1][4:]])


@dataclass
class Transcript:
    raw: bytearray = field(default_factory=bytearray)
    commands: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


class Peer:
    """``async with Peer(script, host, port) as peer``: listens until the block ends."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0):
        self.script = script or Script()
        self.host = host
        self.port = port
        self.sessions: list[Transcript] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def commands(self) -> list[bytes]:
        return [c for s in self.sessions for c in s.commands]

    @property
    def messages(self) -> list[bytes]:
        return [m for s in self.sessions for m in s.messages]

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Let sessions finish reading what the client sent (QUIT), then hang up on the rest.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        transcript = Transcript()
        self.sessions.append(transcript)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                async with asyncio.timeout(20):
                    await self._dialogue(reader, writer, transcript)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        t: Transcript) -> None:
        s = self.script
        if not await _answer(writer, s.greeting):
            return
        while line := await reader.readline():
            t.raw += line
            t.commands.append(line)
            verb = line[:4].upper()
            if verb == b"DATA":
                if not await _answer(writer, s.data):
                    return
                if s.data is not None and s.data.startswith("3"):
                    t.messages.append(await _message(reader, t))
                    if not await _answer(writer, s.dot):
                        return
                continue
            reply = self._reply(verb, line)
            if not await _answer(writer, reply):
                return
            if verb == b"QUIT":
                return

    def _reply(self, verb: bytes, line: bytes) -> Reply:
        s = self.script
        if verb == b"EHLO":
            return s.ehlo_reply()
        if verb == b"HELO":
            return s.helo
        if verb == b"MAIL":
            return s.mail
        if verb == b"RCPT":
            start, end = line.find(b"<"), line.rfind(b">")
            address = line[start + 1:end].decode("utf-8", "replace")
            return s.rcpt.get(address, s.rcpt_default)
        if verb in (b"RSET", b"NOOP"):
            return "250 2.0.0 Ok"
        if verb == b"QUIT":
            return "221 2.0.0 Bye"
        return "502 5.5.2 Error: command not recognized"


async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> bool:
    if reply is None:
        return False
    writer.write(b"".join(line.encode() + b"\r\n" for line in reply.split("\n")))
    await writer.drain()
    return True


async def _message(reader: asyncio.StreamReader, t: Transcript) -> bytes:
    data = bytearray()
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(bytes(data), None)
        t.raw += line
        if line == b".\r\n":
            return bytes(data)
        data += line


async def peers_on_one_port(scripts: Mapping[str, Script]) -> list[Peer]:
    """Start one peer per loopback address, all on the same port (MX hosts share
    smtp_tcp_port). The caller must ``close_all`` them."""
    for _ in range(20):
        peers: list[Peer] = []
        port = 0
        try:
            for host, script in scripts.items():
                peer = await Peer(script, host, port).__aenter__()
                port = peer.port
                peers.append(peer)
            return peers
        except OSError:
            await close_all(peers)
    raise RuntimeError("no port free on all the test addresses")


async def close_all(peers: list[Peer]) -> None:
    for peer in peers:
        await peer.__aexit__(None, None, None)
