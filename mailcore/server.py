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
session task always ends with the connection closed and its count released; a session uses
the sink, restrictions and settings current when it was accepted until it ends, even across
``reconfigure`` (reload), which keeps the sockets of listeners whose address is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP as _AioSmtp

from mailcore.config import Config
from mailcore.config.master import resolve_port
from mailcore.log import MailLog
from mailcore.model import ClientInfo
from mailcore.queue import free_space_ok
from mailcore.smtpd.policy import Etrn, Policy
from mailcore.smtpd.session import MessageSink, NameResolver, Session
from mailcore.smtpd.settings import SmtpdSettings, reply, smtpd_settings
from mailcore.tasks import finish_or_cancel

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


# A listener's identity across reloads: the addresses it binds and its port.
ListenKey = tuple[tuple[str, ...], int]


@dataclass(frozen=True)
class ListenSpec:
    key: ListenKey
    name: str  # the master.cf service name (host:port), the listener's label in metrics
    settings: SmtpdSettings
    config: Config  # main.cf with this listener's -o overrides
    overridden: bool  # the service has -o overrides: it may need restrictions of its own


@dataclass
class _Listener:
    spec: ListenSpec  # replaced by reconfigure; read when a connection is accepted
    server: asyncio.Server | None = None


def listen_specs(config: Config) -> dict[ListenKey, ListenSpec]:
    """Every smtpd listener of master.cf, with the settings its -o overrides give it."""
    specs: dict[ListenKey, ListenSpec] = {}
    for service in config.master.listeners():
        service_config = config.with_overrides(dict(service.overrides),
                                               service_name=service.name)
        port = 0 if service.port == "0" else resolve_port(
            service.port or "", file=service.file, line=service.line)
        hosts = (service.host,) if service.host else tuple(_interfaces(service_config))
        key = (hosts, port)
        specs[key] = ListenSpec(key, service.name, smtpd_settings(service_config),
                                service_config, bool(service.overrides))
    return specs


class SmtpServer:
    """The smtpd listeners of the current Config snapshot."""

    def __init__(self, config: Config, sink: MessageSink, restrictions: Policy,
                 resolver: NameResolver | None, log: MailLog, *,
                 on_connect: Callable[[str], None] | None = None,
                 etrn: Etrn | None = None) -> None:
        self._config = config
        self._sink = sink
        self._restrictions = restrictions
        self._policies: dict[ListenKey, Policy] = {}
        self._etrn = etrn
        self._resolver = resolver
        self._log = log
        self._on_connect = on_connect  # told each accepted connection's listener name
        self._listeners: dict[ListenKey, _Listener] = {}
        self._sessions: set[asyncio.Task[None]] = set()
        self._per_client: Counter[str] = Counter()

    async def start(self) -> None:
        specs = listen_specs(self._config)
        self._policies = self._listener_policies(specs, self._restrictions)
        await self._open(list(specs.values()))

    @staticmethod
    def _listener_policies(specs: Mapping[ListenKey, ListenSpec],
                           default: Policy) -> dict[ListenKey, Policy]:
        """Restrictions per listener with -o overrides, built now so that a bad list is
        refused at start or reload, not at a client's first RCPT."""
        for_config = getattr(default, "for_config", None)
        return {key: for_config(spec.config) for key, spec in specs.items()
                if spec.overridden and for_config is not None}

    async def _open(self, specs: list[ListenSpec]) -> None:
        """Open every listener of ``specs`` or, if one fails, none of them."""
        loop = asyncio.get_running_loop()
        opened: list[_Listener] = []
        try:
            for spec in specs:
                listener = _Listener(spec)
                hosts, port = spec.key
                listener.server = await loop.create_server(
                    lambda entry=listener: self._edge(entry), host=list(hosts), port=port,
                    reuse_address=True)
                opened.append(listener)
        except BaseException:
            await _close([listener.server for listener in opened])
            raise
        for listener in opened:
            self._listeners[listener.spec.key] = listener

    def _edge(self, listener: _Listener) -> _Edge:
        settings = listener.spec.settings
        backstop = settings.session_time_limit + settings.timeout + 60
        return _Edge(self._runner(listener.spec), settings.myhostname, backstop)

    async def reconfigure(self, config: Config, sink: MessageSink, restrictions: Policy,
                          resolver: NameResolver | None) -> None:
        """Reload: new sessions use the new objects and settings; open sessions keep theirs.
        Listeners master.cf no longer has are closed, new ones opened, the others keep their
        sockets. Raises (changing nothing) when a new listener cannot be opened."""
        specs = listen_specs(config)
        policies = self._listener_policies(specs, restrictions)
        added = [spec for key, spec in specs.items() if key not in self._listeners]
        removed = [listener for key, listener in self._listeners.items() if key not in specs]
        try:
            await self._open(added)
        except OSError:
            if not removed:
                raise
            # A new listener may want an address an old one holds (127.0.0.1:25 becoming
            # 0.0.0.0:25): free those and try again, putting them back if it still fails.
            self._drop(removed)
            try:
                await self._open(added)
            except BaseException:
                await self._open([listener.spec for listener in removed])
                raise
        self._config, self._sink = config, sink
        self._restrictions, self._resolver = restrictions, resolver
        self._policies = policies
        self._drop([listener for key, listener in self._listeners.items() if key not in specs])
        for key, listener in self._listeners.items():
            listener.spec = specs[key]

    def _drop(self, listeners: list[_Listener]) -> None:
        for listener in listeners:
            self._listeners.pop(listener.spec.key, None)
            # close() frees the listening socket at once; sessions accepted on it go on
            # (waiting for wait_closed() here would wait for those sessions on Python 3.12+).
            if listener.server is not None:
                listener.server.close()

    def bound_addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for listener in self._listeners.values()
                if listener.server is not None for sock in listener.server.sockets]

    def sessions(self) -> frozenset[asyncio.Task[None]]:
        """The SMTP sessions open now."""
        return frozenset(self._sessions)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, give sessions ``grace`` seconds to finish, then cancel them."""
        await self._close_listeners()
        await finish_or_cancel(self._sessions, grace)

    async def _close_listeners(self) -> None:
        listeners, self._listeners = list(self._listeners.values()), {}
        await _close([listener.server for listener in listeners])

    def _runner(self, spec: ListenSpec):  # type: ignore[no-untyped-def]
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      peer: object) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)
            address, port = _peer(peer)
            if self._on_connect is not None:
                self._on_connect(spec.name)
            try:
                policy = self._policies.get(spec.key, self._restrictions)
                await self._serve(spec.settings, policy, _Stream(reader, writer), address,
                                  port)
            finally:
                self._sessions.discard(task)
        return run

    async def _serve(self, settings: SmtpdSettings, policy: Policy, stream: _Stream,
                     address: str, port: int) -> None:
        self._per_client[address] += 1
        try:
            limit = settings.connection_count_limit
            if limit and self._per_client[address] > limit:
                await self._refuse(settings, stream, address)
                return
            session = Session(
                settings, stream, ClientInfo(address, port), sink=self._sink,
                restrictions=policy, resolver=self._resolver, log=self._log,
                space_ok=lambda size: free_space_ok(settings.queue_directory,
                                                    settings.queue_minfree, size),
                etrn=self._etrn,
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


async def _close(servers: list[asyncio.Server | None]) -> None:
    for server in servers:
        if server is not None:
            server.close()
    for server in servers:
        if server is not None:
            await server.wait_closed()


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
