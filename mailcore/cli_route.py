"""The ``mailcore route`` command: how one address is rewritten, explained, offline.

Owns: the command's syntax, running the Rewriter with tracing on for one recipient (and
optionally one sender and one client address), and printing every step — each table
consulted, the keys tried, the entry that matched and the result — as text or ``--json``.
Must not: send mail, open the queue, or look anything up in DNS; print anything about
transports or nexthops before the resolver exists.
Invariants: the report is built by ``explain_route`` (callable from tests without a
subprocess); a bad address is a UsageError; table problems surface as TableError.
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
from mailcore.errors import UsageError
from mailcore.model import ClientInfo, EnvelopeRecipient
from mailcore.rewrite import RecipientFailure, Rewriter, Step, header_rewrite_context
from mailcore.tables import TableSet


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
        }


def add_route_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "route", help="explain how an address is rewritten (offline)",
        description="Show every rewriting step for ADDRESS as cleanup would apply it: "
        "completion, canonical maps, masquerading, virtual aliases, automatic BCC, "
        "relocated users. Nothing is sent and no DNS lookup is made.",
    )
    p.add_argument("address", metavar="ADDRESS", help="the envelope recipient")
    p.add_argument("--sender", metavar="S", help="envelope sender (for sender rewriting and "
                   "sender_bcc_maps); empty string for the null sender")
    p.add_argument("--client", metavar="IP", help="client address: shows whether its "
                   "headers would be rewritten (local_header_rewrite_clients)")
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
                        warn: Callable[[str], None] | None = None) -> RouteReport:
    classifier = DomainClassifier(config, tables)
    rw = Rewriter(config, tables, classifier, trace=True, warn=warn)
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
    for r in result.recipients:
        moved = await rw.relocated(r.address)
        if moved is not None:
            relocated.append((r.address, moved))
        await rw.unroute(r.address)
    context = None
    if client is not None:
        context = await header_rewrite_context(config, tables, classifier,
                                               ClientInfo(address=client))
    return RouteReport(recipient, clean_sender, client, context, rw.take_steps(),
                       result.recipients, result.failures, tuple(relocated),
                       result.defer_reason)


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
    return "\n".join(lines)


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
        report = asyncio.run(explain_route(config, tables, ns.address, sender=ns.sender,
                                           client=ns.client, warn=warn))
    finally:
        tables.close()
    if ns.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0
