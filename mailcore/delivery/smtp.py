"""The SMTP delivery agent (master.cf transports ``smtp`` and ``relay``): Postfix's smtp(8).

Owns: one delivery request from start to results: checking every envelope address against
mailcore's grammar before it can reach a command line (a bad recipient bounces 5.1.3 and is
never sent), walking the next hops (the request's nexthop list, then smtp_fallback_relay),
the servers of each (mx.py) within smtp_mx_address_limit and smtp_mx_session_limit, and
deciding which server is the final one, so that smtp_trouble.py can keep recipients for a
backup server or give them their result. The session itself is smtp_proto.py.

Must not: change queue state, log deliveries (the scheduler does both), raise for network or
protocol trouble, or hold a message in memory (content is streamed from ContentSource).

Invariants: every recipient of the request gets exactly one RecipientResult; remote text is
sanitised; loop detection (MX or address that is this machine) applies, as in Postfix, only
when the port is 25.

main.cf parameters: smtp_tcp_port, smtp_helo_name, myhostname, inet_interfaces,
proxy_interfaces, smtp_connect_timeout, smtp_helo_timeout, smtp_mail_timeout,
smtp_rcpt_timeout, smtp_data_init_timeout, smtp_data_xfer_timeout, smtp_data_done_timeout,
smtp_quit_timeout, smtp_mx_address_limit, smtp_mx_session_limit, smtp_skip_5xx_greeting,
smtp_never_send_ehlo, smtp_fallback_relay, relayhost, smtp_line_length_limit,
smtp_bind_address, smtp_bind_address6, soft_bounce.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from mailcore.address import AddressError, parse_address
from mailcore.config import Config
from mailcore.delivery import ContentSource, content_lines
from mailcore.delivery import mx as mxmod
from mailcore.delivery.smtp_proto import Session, Timeouts, handshake, transfer
from mailcore.delivery.smtp_trouble import Attempt, Failure
from mailcore.delivery.smtp_wire import Connector, Wire, connect_error_text, open_tcp
from mailcore.errors import ConfigError
from mailcore.model import DeliveryRequest, DeliveryResult
from mailcore.status import sanitize


@dataclass(frozen=True)
class SmtpSettings:
    default_port: int
    helo_name: str
    myhostname: str
    timeouts: Timeouts
    mx_address_limit: int
    mx_session_limit: int
    skip_5xx_greeting: bool
    never_ehlo: bool
    fallback_relay: str
    relayhost: str
    line_limit: int
    bind4: str
    bind6: str
    soft_bounce: bool

    @classmethod
    def from_config(cls, config: Config) -> SmtpSettings:
        t = config.get_time
        try:
            port = mxmod.parse_port(config.get("smtp_tcp_port"))
        except mxmod.NexthopError as exc:
            origin = config.origins.get("smtp_tcp_port")
            raise ConfigError(f"smtp_tcp_port: {exc}", file=origin.file if origin else None,
                              line=origin.line if origin else None) from None
        return cls(
            default_port=port,
            helo_name=config.get("smtp_helo_name") or config.get("myhostname"),
            myhostname=config.get("myhostname"),
            timeouts=Timeouts(
                t("smtp_connect_timeout"), t("smtp_helo_timeout"), t("smtp_mail_timeout"),
                t("smtp_rcpt_timeout"), t("smtp_data_init_timeout"),
                t("smtp_data_xfer_timeout"), t("smtp_data_done_timeout"),
                t("smtp_quit_timeout")),
            mx_address_limit=config.get_int("smtp_mx_address_limit"),
            mx_session_limit=config.get_int("smtp_mx_session_limit"),
            skip_5xx_greeting=config.get_bool("smtp_skip_5xx_greeting"),
            never_ehlo=config.get_bool("smtp_never_send_ehlo"),
            fallback_relay=config.get("smtp_fallback_relay"),
            relayhost=config.get("relayhost"),
            line_limit=config.get_size("smtp_line_length_limit"),
            bind4=config.get("smtp_bind_address"),
            bind6=config.get("smtp_bind_address6"),
            soft_bounce=config.get_bool("soft_bounce"),
        )


class SmtpAgent:
    """``async deliver(request) -> DeliveryResult`` over SMTP; one instance per transport."""

    def __init__(self, config: Config, resolver: mxmod.Lookups, content: ContentSource, *,
                 connector: Connector | None = None, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 own_addresses: frozenset[str] | None = None):
        self._settings = SmtpSettings.from_config(config)
        self._resolver = resolver
        self._content = content
        self._connect = connector or open_tcp
        self._clock = clock
        self._rng = rng or random.Random()
        addresses = own_addresses if own_addresses is not None else mxmod.own_addresses(config)
        self._me = mxmod.Self(self._settings.myhostname.lower(), addresses)

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        attempt = Attempt(request.recipients, soft_bounce=self._settings.soft_bounce,
                          clock=self._clock)
        _validate(request, attempt)
        try:
            if attempt.pending:
                await self._sites(request, attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not lose the results already given
            attempt.final_server = True
            attempt.bulk_fail(Failure("4.3.0", f"internal error in SMTP delivery: "
                                      f"{type(exc).__name__}"))
        attempt.finish()
        return DeliveryResult(request.queue_id, attempt.ordered(r.seq for r in
                                                                request.recipients),
                              attempt.delays())

    async def _sites(self, request: DeliveryRequest, attempt: Attempt) -> None:
        primary = mxmod.split_nexthops(request.nexthop)
        sites = primary + mxmod.split_nexthops(self._settings.fallback_relay)
        last_index = -1
        for index, site in enumerate(sites):
            if not attempt.pending:
                break
            last_index = index
            final_nexthop = index == len(sites) - 1
            try:
                dest = mxmod.parse_nexthop(site, self._settings.default_port)
            except mxmod.NexthopError as exc:
                attempt.why = Failure("4.3.5", str(exc))
                continue
            loop_detect = dest.port == mxmod.SMTP_PORT
            found = await mxmod.resolve(dest, self._resolver, me=self._me,
                                        loop_detect=loop_detect, rng=self._rng)
            if found.failure is not None:
                attempt.why = Failure(found.failure.dsn, found.failure.reason)
                if found.failure.loop or found.failure.final:
                    break
                continue
            final_nexthop = final_nexthop or found.i_am_mx
            await self._servers(request, attempt, dest, found.targets, final_nexthop,
                                loop_detect)
            if final_nexthop:
                break
        _configuration_trouble(attempt, sites, len(primary), last_index,
                               self._settings.relayhost)

    async def _servers(self, request: DeliveryRequest, attempt: Attempt,
                       dest: mxmod.Destination, targets: tuple[mxmod.Target, ...],
                       final_nexthop: bool, loop_detect: bool) -> None:
        limit = self._settings.mx_address_limit
        sessions = 0
        best = targets[0].pref if targets else 0
        for index, target in enumerate(targets):
            if not attempt.pending:
                return
            last = index == len(targets) - 1 or index + 1 == limit
            attempt.final_server = final_nexthop and last
            wire = await self._open(target, attempt)
            if wire is None:
                if last:
                    return
                continue
            try:
                session = self._session(wire, target, attempt, request, dest, loop_detect,
                                        target.pref == best)
                features = await handshake(session)
                if features is not None:
                    sessions += 1
                    last = last or sessions == self._settings.mx_session_limit
                    attempt.final_server = final_nexthop and last
                    await transfer(session, features)
            finally:
                attempt.end_session()
                await wire.close(self._settings.timeouts.quit)
            if last:
                return

    async def _open(self, target: mxmod.Target, attempt: Attempt) -> Wire | None:
        bind = self._settings.bind6 if ":" in target.address else self._settings.bind4
        try:
            reader, writer = await self._connect(target.address, target.port,
                                                 self._settings.timeouts.connect, bind)
        except (OSError, TimeoutError) as exc:
            attempt.why = Failure("4.4.1", f"connect to {target.relay}: "
                                  f"{connect_error_text(exc)}")
            return None
        return Wire(reader, writer)

    def _session(self, wire: Wire, target: mxmod.Target, attempt: Attempt,
                 request: DeliveryRequest, dest: mxmod.Destination, loop_detect: bool,
                 best_mx: bool) -> Session:
        settings = self._settings

        def content() -> AsyncIterator[bytes]:
            return content_lines(self._content, request.queue_id)

        return Session(
            wire=wire, target=target, attempt=attempt, request=request,
            timeouts=settings.timeouts, helo_name=settings.helo_name,
            myhostname=settings.myhostname, nexthop=request.nexthop or dest.text,
            loop_detect=loop_detect, best_mx=best_mx,
            skip_5xx_greeting=settings.skip_5xx_greeting, never_ehlo=settings.never_ehlo,
            needs_smtputf8=needs_smtputf8(request), line_limit=settings.line_limit,
            content=content)


def needs_smtputf8(request: DeliveryRequest) -> bool:
    """The sender asked for SMTPUTF8, or an envelope address is not ASCII."""
    if dict(request.attrs).get("smtputf8") == "yes":
        return True
    return not request.sender.isascii() or any(
        not r.address.isascii() for r in request.recipients)


def _validate(request: DeliveryRequest, attempt: Attempt) -> None:
    """Only addresses that mailcore's grammar accepts may reach a MAIL or RCPT line."""
    problem = _address_problem(request.sender, sender=True) if request.sender else None
    if problem is not None:
        for rcpt in request.recipients:
            attempt.reject(rcpt.seq, Failure("5.1.7", f"bad sender address syntax: {problem}"))
        return
    for rcpt in request.recipients:
        problem = _address_problem(rcpt.address, sender=False)
        if problem is not None:
            attempt.reject(rcpt.seq, Failure(
                "5.1.3", f"bad recipient address syntax: {sanitize(rcpt.address)}: {problem}"))


def _address_problem(text: str, *, sender: bool) -> str | None:
    try:
        address = parse_address(text, smtputf8=True, for_sender=sender)
    except AddressError as exc:
        return exc.detail
    if not address.domain:
        return "address has no domain"
    return None


def _configuration_trouble(attempt: Attempt, sites: list[str], primaries: int,
                           last_index: int, relayhost: str) -> None:
    """A hard failure with a fallback relay or the relayhost is a local configuration
    problem: Postfix defers (4.3.5) rather than bounce, keeping the text."""
    why = attempt.why
    if not attempt.pending or why is None or why.soft or last_index < 0:
        return
    if last_index >= primaries or (relayhost and sites and sites[0] == relayhost):
        attempt.why = Failure("4.3.5", why.reason, why.relay)
