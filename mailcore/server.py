"""smtpd's listeners: one per master.cf ``inet`` smtpd service, each with its -o overrides.

Owns: opening and closing the listening sockets, the per-client-address connection count
(smtpd_client_connection_count_limit), the set of running sessions and their graceful drain
on ``stop``, and the aiosmtpd edge: aiosmtpd's ``SMTP`` protocol object owns the transport
(and, in a later issue, the STARTTLS switch); its command loop is replaced by
mailcore.smtpd.session, because aiosmtpd's own loop buffers whole messages, accepts bare
LF, answers exceptions with a permanent ``500 (Exception) text`` and has no session
deadline.

Must not: contain dialogue policy (mailcore/smtpd/policy.py) or write to the queue (the
injected sink does).

Invariants: no global state — two SmtpServer objects run side by side in one process; a
session task always ends with the connection closed and its count released.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections import Counter
from collections.abc import Callable

from aiosmtpd.smtp import SMTP as _AioSmtp

from mailcore.config import Config
from mailcore.config.master import Service, resolve_port
from mailcore.log import MailLog
from mailcore.model import ClientInfo
from mailcore.queue import free_space_ok
from mailcore.smtpd.policy import Policy
from mailcore.smtpd.session import MessageSink, NameResolver, Session
from mailcore.smtpd.settings import SmtpdSettings, reply, smtpd_settings

__all__ = ["MessageSink", "SmtpServer", "serve_stdio"]


class _Edge(_AioSmtp):
    """aiosmtpd's protocol object with mailcore's session as its command loop."""

    # aiosmtpd sizes its StreamReader from this; 64 KiB lets DATA arrive in large reads
    # while keeping at most ~128 KiB per connection buffered before reading pauses.
    line_length_limit = 64 * 1024

    def __init__(self, run: Callable[[asyncio.StreamReader, asyncio.StreamWriter, object],
                                      asyncio.Future | object], hostname: str,
                 backstop: float) -> None:
        super().__init__(_NoHandler(), hostname=hostname, timeout=backstop,
                         loop=asyncio.get_running_loop())
        self._mailcore_run = run

    async def _handle_client(self) -> None:
        assert self.session is not None
        await self._mailcore_run(self._reader, self._writer, self.session.peer)  # type: ignore

    def eof_received(self) -> bool | None:
        # aiosmtpd cancels its command task on EOF; we let the session read the EOF instead,
        # so a message whose final dot arrived with the EOF is still committed properly.
        return asyncio.StreamReaderProtocol.eof_received(self)


class _NoHandler:
    """aiosmtpd wants a handler object; mailcore's session never calls its hooks."""


class _Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.read = reader.read
        self.write = writer.write
        self.drain = writer.drain
        self.close = writer.close


class SmtpServer:
    """All smtpd listeners of one Config snapshot."""

    def __init__(self, config: Config, sink: MessageSink, restrictions: Policy,
                 resolver: NameResolver | None, log: MailLog) -> None:
        self._config = config
        self._sink = sink
        self._restrictions = restrictions
        self._resolver = resolver
        self._log = log
        self._servers: list[asyncio.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self._per_client: Counter[str] = Counter()

    def _listen_specs(self) -> list[tuple[Service, list[str], int, SmtpdSettings]]:
        specs = []
        for service in self._config.master.listeners():
            config = self._config.with_overrides(dict(service.overrides),
                                                 service_name=service.name)
            port = 0 if service.port == "0" else resolve_port(
                service.port or "", file=service.file, line=service.line)
            hosts = [service.host] if service.host else _interfaces(config)
            specs.append((service, hosts, port, smtpd_settings(config)))
        return specs

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for _service, hosts, port, settings in self._listen_specs():
                backstop = settings.session_time_limit + settings.timeout + 60
                server = await loop.create_server(
                    lambda s=settings, b=backstop: _Edge(self._runner(s), s.myhostname, b),
                    host=hosts, port=port, reuse_address=True,
                )
                self._servers.append(server)
        except BaseException:
            await self._close_listeners()
            raise

    def bound_addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for server in self._servers for sock in server.sockets]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, give sessions ``grace`` seconds to finish, then cancel them."""
        await self._close_listeners()
        if self._sessions:
            _, pending = await asyncio.wait(set(self._sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _close_listeners(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    def _runner(self, settings: SmtpdSettings):  # type: ignore[no-untyped-def]
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      peer: object) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)
            address, port = _peer(peer)
            try:
                await self._serve(settings, _Stream(reader, writer), address, port)
            finally:
                self._sessions.discard(task)
        return run

    async def _serve(self, settings: SmtpdSettings, stream: _Stream, address: str,
                     port: int) -> None:
        self._per_client[address] += 1
        try:
            limit = settings.connection_count_limit
            if limit and self._per_client[address] > limit:
                await self._refuse(settings, stream, address)
                return
            session = Session(
                settings, stream, ClientInfo(address, port), sink=self._sink,
                restrictions=self._restrictions, resolver=self._resolver, log=self._log,
                space_ok=lambda size: free_space_ok(settings.queue_directory,
                                                    settings.queue_minfree, size),
            )
            await session.run()
        finally:
            self._per_client[address] -= 1
            if self._per_client[address] <= 0:
                del self._per_client[address]

    async def _refuse(self, settings: SmtpdSettings, stream: _Stream, address: str) -> None:
        count = self._per_client[address]
        self._log.warning("smtpd", f"Connection concurrency limit exceeded: {count} from "
                                   f"unknown[{address}] for service smtpd")
        stream.write(reply(421, "4.7.0", f"{settings.myhostname} Error: too many "
                                         f"connections from {address}").render())
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(settings.timeout):
                await stream.drain()
        stream.close()


def _peer(peer: object) -> tuple[str, int]:
    if isinstance(peer, tuple) and len(peer) >= 2:
        address = str(peer[0])
        with contextlib.suppress(ValueError):
            mapped = ipaddress.ip_address(address)
            if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
                address = str(mapped.ipv4_mapped)
        return address, int(peer[1])
    return "unknown", 0


def _interfaces(config: Config) -> list[str]:
    """inet_interfaces: "all" is every IPv4 and IPv6 address, "loopback-only" the loopback."""
    items = [i.lower() for i in config.get_list("inet_interfaces")]
    if not items or "all" in items:
        return ["0.0.0.0", "::"] if socket.has_ipv6 else ["0.0.0.0"]
    if "loopback-only" in items:
        return ["127.0.0.1", "::1"] if socket.has_ipv6 else ["127.0.0.1"]
    return [i.strip("[]") for i in items]


class _StdioStream:
    """Standard input and output as one SMTP stream (``sendmail -bs``).

    Reads go through a thread because stdin may be a regular file, which asyncio's pipe
    transports refuse; replies are small and written straight to the descriptor."""

    def __init__(self, read_fd: int, write_fd: int):
        self._read_fd, self._write_fd = read_fd, write_fd

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(os.read, self._read_fd, n)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


STDIO_CLIENT = ClientInfo(address="127.0.0.1", name="localhost", reverse_name="localhost")


async def serve_stdio(config: Config, sink: MessageSink, *, read_fd: int = 0,
                      write_fd: int = 1, log: MailLog | None = None) -> int:
    """One SMTP session on standard input/output, as Postfix's ``sendmail -bs`` runs smtpd
    stand-alone: the local user is the client localhost[127.0.0.1], no peer name lookups,
    and accepted messages go to ``sink`` (the maildrop). Returns the exit status."""
    from mailcore.log import open_maillog
    from mailcore.restrictions import Restrictions
    from mailcore.tables import TableSet

    settings = smtpd_settings(config)
    log = log or open_maillog(config.get, config.config_dir)
    tables = TableSet(base_dir=config.config_dir)
    try:
        session = Session(
            settings, _StdioStream(read_fd, write_fd), STDIO_CLIENT, sink=sink,
            restrictions=Restrictions(config, tables), resolver=None, log=log,
            space_ok=lambda size: free_space_ok(settings.queue_directory,
                                                settings.queue_minfree, size),
        )
        await session.run()
    finally:
        tables.close()
    return 0
