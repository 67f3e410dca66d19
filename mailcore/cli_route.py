"""The ``mailcore route`` command: how one address is rewritten and routed, explained.

Owns: the command's syntax, running the Rewriter with tracing on for one recipient (and
optionally one sender and one client address), resolving every final recipient with the
AddressResolver, and printing every step — each table consulted, the keys tried, the entry
that matched, the address class, the transport and nexthop — as text or ``--json``; with
``--mx``, the MX hosts of each nexthop that the SMTP client would look up.
Must not: send mail, open the queue, or touch DNS unless ``--mx`` asks (and then only
through mailcore.dns.Resolver, which honours dns_nameservers).
Invariants: the report is built by ``explain_route`` (callable from tests without a
subprocess); a bad address is a UsageError; table problems surface as TableError; the text
of each resolved recipient ends with ``transport: X`` and ``nexthop: Y`` (then MX lines).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailcore.addrclass import DomainClassifier
from mailcore.address import AddressError, parse_address
from mailcore.config import Config
from mailcore.dns import FOUND
from mailcore.dns import Resolver as DnsResolver
from mailcore.errors import UsageError
from mailcore.model import ClientInfo, EnvelopeRecipient
from mailcore.rewrite import (
    AddressResolver,
    RecipientFailure,
    Resolution,
    Rewriter,
    Step,
    header_rewrite_context,
)
from mailcore.rewrite.resolve import NO_TRANSPORT_REASON
from mailcore.tables import TableSet


@dataclass(frozen=True)
class MxReport:
    """The MX answer for one nexthop domain: ``status`` is a mailcore.dns status, or
    "skipped" with the reason in ``detail`` when the SMTP client would not look up MX."""

    domain: str
    status: str
    hosts: tuple[tuple[int, str], ...] = ()  # (preference, host) in preference order
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "status": self.status, "detail": self.detail,
                "hosts": [{"preference": p, "host": h} for p, h in self.hosts]}


@dataclass(frozen=True)
class RouteReport:
    address: str
    sender: str | None  # rewritten envelope sender, when --sender was given
    client: str | None
    header_context: str | None  # "local", "remote" or None (headers left alone)
    steps: tuple[Step, ...]
    recipients: tuple[EnvelopeRecipient, ...]
    failures: tuple[RecipientFailure, ...]
    relocated: tuple[tuple[str, str], ...]  # (recipient, new location)
    defer_reason: str | None
    resolutions: tuple[Resolution, ...] = ()  # one per final recipient, in order
    mx: tuple[tuple[MxReport, ...], ...] | None = None  # per resolution, with --mx

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "sender": self.sender,
            "client": self.client,
            "header_rewrite_context": self.header_context,
            "steps": [s.as_dict() for s in self.steps],
            "recipients": [
                {"address": r.address, "orig_rcpt": r.orig_rcpt, "notify": r.notify}
                for r in self.recipients
            ],
            "refused": [
                {"address": f.recipient.address, "orig_rcpt": f.recipient.orig_rcpt,
                 "code": f.code, "status": f.status, "text": f.text}
                for f in self.failures
            ],
            "relocated": [{"address": a, "moved_to": t} for a, t in self.relocated],
            "defer_reason": self.defer_reason,
            "routes": [
                {**r.as_dict(),
                 **({"mx": [m.as_dict() for m in self.mx[i]]} if self.mx is not None else {})}
                for i, r in enumerate(self.resolutions)
            ],
        }


def add_route_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "route", help="explain how an address is rewritten and routed",
        description="Show every rewriting step for ADDRESS as cleanup would apply it: "
        "completion, canonical maps, masquerading, virtual aliases, automatic BCC, "
        "relocated users; then the address class, transport_maps lookups, transport and "
        "nexthop of each final recipient. Nothing is sent; DNS is used only with --mx.",
    )
    p.add_argument("address", metavar="ADDRESS", help="the envelope recipient")
    p.add_argument("--sender", metavar="S", help="envelope sender (for sender rewriting and "
                   "sender_bcc_maps); empty string for the null sender")
    p.add_argument("--client", metavar="IP", help="client address: shows whether its "
                   "headers would be rewritten (local_header_rewrite_clients)")
    p.add_argument("--mx", action="store_true", help="also look up the MX hosts of each "
                   "nexthop domain (through dns_nameservers)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _address(text: str, what: str) -> str:
    inner = text[1:-1] if text.startswith("<") and text.endswith(">") else text
    if not inner:
        return ""
    try:
        return parse_address(inner, for_sender=what == "sender").text
    except AddressError as exc:
        raise UsageError(f"bad {what} address {text!r}: {exc.detail}") from None


async def explain_route(config: Config, tables: TableSet, address: str, *,
                        sender: str | None = None, client: str | None = None,
                        warn: Callable[[str], None] | None = None,
                        dns: DnsResolver | None = None) -> RouteReport:
    """The whole explanation; with ``dns`` given, MX hosts of each nexthop too."""
    classifier = DomainClassifier(config, tables)
    rw = Rewriter(config, tables, classifier, trace=True, warn=warn)
    resolver = AddressResolver(config, tables, classifier, rw)
    recipient = _address(address, "recipient")
    if not recipient:
        raise UsageError("the recipient address must not be empty")
    clean_sender = None
    if sender is not None:
        clean_sender = await rw.rewrite_sender(_address(sender, "sender"))
    rewritten = await rw.rewrite_recipient(recipient)
    result = await rw.expand_recipients([EnvelopeRecipient(rewritten, recipient)],
                                        sender=clean_sender or "")
    relocated: list[tuple[str, str]] = []
    resolutions: list[Resolution] = []
    for r in result.recipients:
        resolution = await resolver.resolve(r.address, sender=clean_sender or "")
        resolutions.append(resolution)
        if resolution.relocated is not None:
            relocated.append((r.address, resolution.relocated))
    mx = None
    if dns is not None:
        mx = tuple([await mx_report(dns, res) for res in resolutions])
    context = None
    if client is not None:
        context = await header_rewrite_context(config, tables, classifier,
                                               ClientInfo(address=client))
    return RouteReport(recipient, clean_sender, client, context, rw.take_steps(),
                       result.recipients, result.failures, tuple(relocated),
                       result.defer_reason, tuple(resolutions), mx)


async def mx_report(dns: DnsResolver, resolution: Resolution) -> tuple[MxReport, ...]:
    """MX hosts of every nexthop the SMTP/LMTP client would look up in DNS."""
    route = resolution.route
    if not resolution.destinations:
        return (MxReport(route.nexthop, "skipped",
                         detail=f"transport {route.transport} does not look up MX records"),)
    reports = []
    for hop in resolution.destinations:
        if hop.unix or not hop.mx:
            why = "a UNIX-domain socket" if hop.unix else f"[{hop.host}] suppresses MX lookups"
            reports.append(MxReport(hop.host, "skipped", detail=why))
            continue
        answer = await dns.query(hop.host, "MX")
        hosts = tuple(sorted(_mx_value(v) for v in answer.values)) if answer.status == FOUND else ()
        reports.append(MxReport(hop.host, answer.status, hosts, answer.detail))
    return tuple(reports)


def _mx_value(text: str) -> tuple[int, str]:
    preference, _, host = text.partition(" ")
    return int(preference), host.rstrip(".").lower() or "."


def format_report(report: RouteReport) -> str:
    lines = [f"address: {report.address}"]
    if report.sender is not None:
        lines.append(f"sender: <{report.sender}>")
    for step in report.steps:
        lines.extend(_step_lines(step))
    if report.client is not None:
        ctx = report.header_context or "none (headers from this client are not rewritten)"
        lines.append(f"header rewrite context for client {report.client}: {ctx}")
    lines.append("final recipients:" if report.recipients else "final recipients: none")
    for r in report.recipients:
        orig = f" (original recipient {r.orig_rcpt})" if r.orig_rcpt != r.address else ""
        lines.append(f"  {r.address}{orig}")
    for f in report.failures:
        lines.append(f"refused: {f.recipient.address}: {f.code} {f.status} {f.text}")
    for addr, moved in report.relocated:
        lines.append(f"relocated: {addr}: 550 5.1.6 User has moved to {moved}")
    if report.defer_reason:
        lines.append(f"message would be deferred: 451 4.6.0 {report.defer_reason}")
    for i, resolution in enumerate(report.resolutions):
        lines.extend(_resolution_lines(resolution))
        if report.mx is not None:
            lines.extend(_mx_lines(report.mx[i]))
    return "\n".join(lines)


def _resolution_lines(res: Resolution) -> list[str]:
    route = res.route
    cls = res.address_class.value if res.address_class else "none (content filter)"
    lines = [f"route for {route.recipient}: address class {cls}",
             f"    transport from {res.source}, nexthop from {res.nexthop_source}"]
    for name, match in (("sender_dependent_default_transport_maps", res.sender_transport_match),
                        ("sender_dependent_relayhost_maps", res.sender_relay_match)):
        if match is not None:
            lines.append(f"    {name}: {match.table}: {match.key} -> {match.value}")
    if res.transport_keys:
        lines.append(f"    transport_maps keys tried: {', '.join(res.transport_keys)}")
        m = res.transport_match
        lines.append(f"    matched: {m.table}: {m.key} -> {m.value}" if m
                     else "    transport_maps: no match")
    if res.relocated is not None:
        lines.append(f"    relocated_maps: User has moved to {res.relocated}")
    if res.routed:
        lines.append("    the local part still holds routing (@, ! or %)")
    if res.no_mx:
        lines.append("    nexthop in [brackets]: no MX lookup")
    if res.fallback_relay:
        lines.append(f"    smtp_fallback_relay: {', '.join(res.fallback_relay)}")
    if res.transport_unavailable:
        lines.append(f"    warning: master.cf has no delivery service {route.transport!r}: "
                     f"mail would be deferred ({NO_TRANSPORT_REASON})")
    if res.deferred_transport:
        lines.append("    transport is in defer_transports: mail waits for a flush "
                     "(4.3.2 deferred transport)")
    lines += [f"transport: {route.transport}", f"nexthop: {route.nexthop}"]
    return lines


def _mx_lines(reports: tuple[MxReport, ...]) -> list[str]:
    lines = []
    for mx in reports:
        if mx.status == "skipped":
            lines.append(f"mx {mx.domain}: none ({mx.detail})")
        elif mx.status != FOUND:
            lines.append(f"mx {mx.domain}: {mx.status} ({mx.detail})")
        for preference, host in mx.hosts:
            note = "  (null MX: the domain accepts no mail)" if host == "." else ""
            lines.append(f"mx {mx.domain}: {preference} {host}{note}")
    return lines


def _step_lines(step: Step) -> list[str]:
    result = ", ".join(step.result) if step.result else "(none)"
    head = f"{step.stage}: {step.address} -> {result}"
    lines = [head + (f"  [{step.note}]" if step.note else "")]
    if step.tables:
        lines.append(f"    tables: {', '.join(step.tables)}")
    if step.keys:
        lines.append(f"    keys tried: {', '.join(step.keys)}")
    if step.table is not None:
        lines.append(f"    matched: {step.table}: {step.key} -> {step.value}")
    return lines


def run_route(ns: argparse.Namespace, load_config: Callable[[], Config]) -> int:
    config = load_config()

    def warn(message: str) -> None:
        print(f"mailcore route: warning: {message}", file=sys.stderr)

    tables = TableSet(base_dir=config.config_dir, warn=warn)
    try:
        dns = DnsResolver.from_config(config) if ns.mx else None
        report = asyncio.run(explain_route(config, tables, ns.address, sender=ns.sender,
                                           client=ns.client, warn=warn, dns=dns))
    finally:
        tables.close()
    if ns.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0
