"""The LmtpAgent and one request's LMTP conversation (connect, dialogue, settling recipients).

Owns: connecting to the next hop (a unix socket relative to queue_directory, or each
address of an inet host in turn, names through mailcore.dns), the order of the dialogue —
greeting, LHLO, MAIL/RCPT/DATA in lockstep or pipelined, the content, one reply per
accepted recipient, QUIT — and the per-stage timeouts and phases used in failure wording.
Must not: change queue state, log delivery results, retry, use the system resolver, or hold
the message in memory; command text and reply wording come from proto.py.
Invariants: every recipient gets exactly one result unless the agent itself crashes; a
broken or timed-out conversation defers the recipients not yet settled, never bounces them;
a queue file that cannot be read is a local data error (4.3.0), the message is then never
ended with "."; the connection is always closed.
Parameters: through LmtpSettings (settings.py); dns_nameservers/dns_timeout via Resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from mailcore.address import AddressError
from mailcore.config import Config
from mailcore.delivery import ContentSource, content_lines
from mailcore.delivery.lmtp.proto import (
    Nexthop,
    Peer,
    failure,
    inet_peer,
    mail_command,
    needs_smtputf8,
    parse_nexthop,
    rcpt_command,
    size_limit,
    smtp_path,
    stream_failure,
    unix_peer,
)
from mailcore.delivery.lmtp.settings import LmtpSettings
from mailcore.delivery.wire import MAX_LINE, Wire, WireError, WireReply, command_bytes
from mailcore.dns import DnsResult, Resolver
from mailcore.model import (
    BOUNCED,
    DEFERRED,
    SENT,
    Delays,
    DeliveryRequest,
    DeliveryResult,
    RecipientRef,
    RecipientResult,
)

AFTER_DOT = "sending end of data -- message may be sent more than once"


class AddressResolver(Protocol):
    async def addresses(self, name: str) -> DnsResult: ...


def _limit(seconds: float) -> float | None:
    return seconds if seconds > 0 else None


def _os_reason(exc: OSError) -> str:
    # asyncio words a refused connect "Connect call failed (...)"; Postfix says %m
    return os.strerror(exc.errno) if exc.errno else (exc.strerror or type(exc).__name__)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _LocalDataError(Exception):
    """The queued content could not be read; the message must not be ended with "."."""


class LmtpAgent:
    """``await agent.deliver(request)`` for the lmtp transport; one connection per request."""

    def __init__(self, config: Config, content: ContentSource, *,
                 clock: Callable[[], float] = time.monotonic,
                 resolver: AddressResolver | None = None):
        self.settings = LmtpSettings.from_config(config)
        self.content = content
        self.clock = clock
        self._config = config
        self._resolver = resolver

    def resolver(self) -> AddressResolver:
        if self._resolver is None:  # built on first use: most LMTP next hops are sockets
            self._resolver = Resolver.from_config(self._config)
        return self._resolver

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        run = _Delivery(self, request)
        await run.run()
        return DeliveryResult(request.queue_id, run.results(), run.delays())


class _Delivery:
    """One request's conversation and the recipients it has settled so far."""

    def __init__(self, agent: LmtpAgent, request: DeliveryRequest):
        self.agent = agent
        self.s = agent.settings
        self.request = request
        self.settled: dict[int, RecipientResult] = {}
        self.peer: Peer | None = None
        self.phase = "receiving the initial server greeting"
        self.started = agent.clock()
        self.setup_done: float | None = None
        self.action = "delivered" if self.s.assume_final else "relayed"

    @property
    def here(self) -> Peer:
        """The connected peer; only asked for once a connection exists."""
        assert self.peer is not None
        return self.peer

    # --- results ---------------------------------------------------------------
    def settle(self, ref: RecipientRef, status: str, dsn: str, reason: str) -> None:
        relay = self.peer.relay if self.peer else "none"
        action = self.action if status == SENT else ""
        self.settled[ref.seq] = RecipientResult(ref.seq, status, dsn, reason, relay, action)

    def fail_unsettled(self, status: str, dsn: str, reason: str) -> None:
        for ref in self.request.recipients:
            if ref.seq not in self.settled:
                self.settle(ref, status, dsn, reason)

    def results(self) -> tuple[RecipientResult, ...]:
        return tuple(self.settled[r.seq] for r in self.request.recipients
                     if r.seq in self.settled)

    def delays(self) -> Delays:
        end = self.agent.clock()
        setup_end = self.setup_done if self.setup_done is not None else end
        return Delays(setup=max(0.0, setup_end - self.started),
                      transmission=max(0.0, end - setup_end))

    # --- connection ------------------------------------------------------------
    async def run(self) -> None:
        try:
            nexthop = parse_nexthop(self.request.nexthop, self.s.tcp_port)
        except ValueError as exc:
            self.fail_unsettled(DEFERRED, "4.3.5", f"mail system configuration error: bad "
                                f"LMTP destination {self.request.nexthop!r}: {exc}")
            return
        wire = await self.connect(nexthop)
        if wire is None:
            return
        try:
            await self.converse(wire)
        except WireError as exc:
            self.fail_unsettled(*stream_failure(exc, self.here, self.phase))
        except _LocalDataError:
            self.fail_unsettled(DEFERRED, "4.3.0",
                                f"local data error while talking to {self.here.name}")
        finally:
            await wire.close()

    async def connect(self, nexthop: Nexthop) -> Wire | None:
        if nexthop.kind == "unix":
            path = Path(nexthop.path)
            path = path if path.is_absolute() else self.s.queue_directory / path
            targets = [(unix_peer(self.s.myhostname, nexthop.path), str(path), None)]
        else:
            targets = [(inet_peer(nexthop.host, addr, nexthop.port), "", addr)
                       for addr in await self.addresses(nexthop.host)]
        why = ""
        for peer, path, addr in targets:
            try:
                async with asyncio.timeout(_limit(self.s.connect_timeout)):
                    if addr is None:
                        reader, writer = await asyncio.open_unix_connection(
                            path, limit=MAX_LINE * 2)
                    else:
                        reader, writer = await asyncio.open_connection(
                            addr, nexthop.port, limit=MAX_LINE * 2)
            except TimeoutError:
                why = f"connect to {path or peer.relay}: Connection timed out"
            except OSError as exc:
                why = f"connect to {path or peer.relay}: {_os_reason(exc)}"
            else:
                self.peer = peer
                return Wire(reader, writer)
        if why:  # an empty list of addresses was settled by the lookup
            self.fail_unsettled(DEFERRED, "4.4.1", why)
        return None

    async def addresses(self, host: str) -> list[str]:
        if _is_address(host):
            return [host]
        answer = await self.agent.resolver().addresses(host)
        if answer.found:
            return list(answer.values)
        try_again = ", try again" if answer.temporary else ""
        self.fail_unsettled(DEFERRED if answer.temporary else BOUNCED,
                            "4.4.3" if answer.temporary else "5.4.4",
                            f"Host or domain name not found. Name service error for "
                            f"name={host} type=A: Host not found{try_again}")
        return []

    # --- the dialogue ----------------------------------------------------------
    async def converse(self, wire: Wire) -> None:
        features = await self.handshake(wire)
        if features is None:
            return await self.quit(wire)
        self.setup_done = self.agent.clock()
        if self.refuse_before_mail(features):
            return await self.quit(wire)
        sendable = self.sendable()
        if not sendable:
            return await self.quit(wire)
        if "PIPELINING" in features:
            accepted = await self.envelope_pipelined(wire, features, sendable)
        else:
            accepted = await self.envelope_lockstep(wire, features, sendable)
        if accepted is None:  # the server is waiting for content we will not send
            return None
        if accepted:
            await self.transfer(wire, accepted)
        await self.quit(wire)

    async def handshake(self, wire: Wire) -> dict[str, str] | None:
        peer = self.here
        greeting = await wire.read_reply(self.s.lhlo_timeout)
        if greeting.code // 100 != 2:
            status, dsn, _ = failure(greeting, peer, "")
            if dsn.startswith("5") and self.s.skip_5xx_greeting:
                status, dsn = DEFERRED, "4" + dsn[1:]
            self.fail_unsettled(status, dsn, f"host {peer.name} refused to talk to me: "
                                             f"{greeting.text}")
            return None
        self.phase = "performing the LHLO handshake"
        await wire.command(f"LHLO {self.s.lhlo_name}", self.s.lhlo_timeout)
        lhlo = await wire.read_reply(self.s.lhlo_timeout)
        if lhlo.code // 100 != 2:
            self.fail_unsettled(*failure(lhlo, peer, "LHLO"))
            return None
        return lhlo.keywords()

    def refuse_before_mail(self, features: dict[str, str]) -> bool:
        peer = self.here
        limit = size_limit(features)
        if limit and self.request.size > limit:
            self.fail_unsettled(BOUNCED, "5.3.4", f"message size {self.request.size} exceeds "
                                f"size limit {limit} of server {peer.name}")
            return True
        if "SMTPUTF8" not in features and needs_smtputf8(self.request):
            self.fail_unsettled(BOUNCED, "5.6.7", "SMTPUTF8 is required, but was not "
                                f"offered by host {peer.name}")
            return True
        return False

    def sendable(self) -> list[RecipientRef]:
        """Recipients whose address can be written as an RCPT path; others bounce here."""
        try:
            smtp_path(self.request.sender)
        except AddressError as exc:
            self.fail_unsettled(BOUNCED, "5.1.7", f"bad sender address syntax: {exc.detail}")
            return []
        good = []
        for ref in self.request.recipients:
            try:
                smtp_path(ref.address)
            except AddressError as exc:
                self.settle(ref, BOUNCED, "5.1.3", f"bad recipient address syntax: {exc.detail}")
            else:
                good.append(ref)
        return good

    async def envelope_lockstep(self, wire: Wire, features: dict[str, str],
                                sendable: list[RecipientRef]) -> list[RecipientRef] | None:
        self.phase = "sending MAIL FROM"
        await wire.command(mail_command(self.request, features), self.s.mail_timeout)
        reply = await wire.read_reply(self.s.mail_timeout)
        if reply.code // 100 != 2:
            self.fail_unsettled(*failure(reply, self.here, "MAIL FROM"))
            return []
        self.phase = "sending RCPT TO"
        accepted = []
        for ref in sendable:
            await wire.command(rcpt_command(ref, features), self.s.rcpt_timeout)
            reply = await wire.read_reply(self.s.rcpt_timeout)
            if reply.code // 100 == 2:
                accepted.append(ref)
            else:
                self.settle(ref, *failure(reply, self.here, "RCPT TO"))
        if not accepted:
            return []
        self.phase = "sending DATA command"
        await wire.command("DATA", self.s.data_init_timeout)
        return self.after_data(await wire.read_reply(self.s.data_init_timeout), accepted)

    async def envelope_pipelined(self, wire: Wire, features: dict[str, str],
                                 sendable: list[RecipientRef]) -> list[RecipientRef] | None:
        """MAIL, every RCPT and DATA in one write (RFC 2920), then their replies in order."""
        self.phase = "sending MAIL FROM"
        lines = [mail_command(self.request, features)]
        lines += [rcpt_command(ref, features) for ref in sendable]
        lines.append("DATA")
        await wire.send(b"".join(command_bytes(line) for line in lines), self.s.mail_timeout)
        mail = await wire.read_reply(self.s.mail_timeout)
        mail_ok = mail.code // 100 == 2
        if not mail_ok:  # settled now: a server that hangs up next must not change this
            self.fail_unsettled(*failure(mail, self.here, "MAIL FROM"))
        self.phase = "sending RCPT TO"
        accepted = []
        for ref in sendable:
            reply = await wire.read_reply(self.s.rcpt_timeout)
            if not mail_ok:
                continue
            if reply.code // 100 == 2:
                accepted.append(ref)
            else:
                self.settle(ref, *failure(reply, self.here, "RCPT TO"))
        self.phase = "sending DATA command"
        data = await wire.read_reply(self.s.data_init_timeout)
        if not accepted:
            return None if data.code == 354 else []
        return self.after_data(data, accepted)

    def after_data(self, data: WireReply, accepted: list[RecipientRef]) -> list[RecipientRef]:
        if data.code == 354:
            return accepted
        for ref in accepted:
            self.settle(ref, *failure(data, self.here, "DATA"))
        return []

    async def transfer(self, wire: Wire, accepted: list[RecipientRef]) -> None:
        """The content, then one reply per accepted recipient, each settled as it comes."""
        self.phase = "sending message body"
        await wire.send_content(self.lines(), self.s.data_xfer_timeout, self.s.line_length_limit)
        self.phase = AFTER_DOT
        for ref in accepted:
            reply = await wire.read_reply(self.s.data_done_timeout)
            if reply.code // 100 == 2:
                dsn = reply.dsn if reply.dsn.startswith("2") else "2.0.0"
                self.settle(ref, SENT, dsn, reply.text)
            else:
                self.settle(ref, *failure(reply, self.here, "end of DATA"))

    async def lines(self) -> AsyncIterator[bytes]:
        try:
            async for line in content_lines(self.agent.content, self.request.queue_id):
                yield line
        except Exception as exc:  # a missing or corrupt queue file, never the peer's fault
            raise _LocalDataError(str(exc)) from exc

    async def quit(self, wire: Wire) -> None:
        """Say goodbye; what the server answers no longer changes any recipient."""
        try:
            await wire.command("QUIT", self.s.quit_timeout)
            await wire.read_reply(self.s.quit_timeout)
        except WireError:
            pass


