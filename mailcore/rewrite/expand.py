"""Recipient expansion after canonical mapping: cleanup's out_recipient and automatic BCC.

Owns: virtual_alias_maps one-to-many expansion (recursive, with Postfix's recursion,
expansion and address-length limits and "an address may expand to itself once"), refusing
recipients left in a virtual alias domain, sender_bcc_maps / recipient_bcc_maps /
always_bcc, DSN NOTIFY=SUCCESS "expanded" notices, and duplicate elimination.
Must not: raise for an unknown user or a limit (both are values in ExpandResult); rewrite
headers; decide transports.
Invariants: every output recipient carries an orig_rcpt (the address as received when the
caller gave none); duplicates are compared case-insensitively on (ORCPT, NOTIFY, original
recipient, address) — only the address when enable_original_recipient = no — and the filter
stops remembering after duplicate_filter_limit entries (0: no limit), as Postfix's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mailcore.addrclass import AddressClass
from mailcore.model import EnvelopeRecipient
from mailcore.rewrite.forms import split_address
from mailcore.rewrite.settings import Step

if TYPE_CHECKING:
    from mailcore.rewrite.core import Rewriter

EXPANSION_ERROR = "Alias expansion error"  # Postfix answers it with 451 4.6.0


@dataclass(frozen=True)
class RecipientFailure:
    """A recipient refused at expansion: cleanup bounces it (or smtpd rejects it) with these."""

    recipient: EnvelopeRecipient
    code: int  # unknown_virtual_alias_reject_code, for an SMTP-time rejection
    status: str  # enhanced status code
    text: str


@dataclass(frozen=True)
class ExpandResult:
    recipients: tuple[EnvelopeRecipient, ...]
    failures: tuple[RecipientFailure, ...] = ()
    # Recipients with NOTIFY=SUCCESS whose address changed: each is owed a 2.0.0 "alias
    # expanded" success notice (DSN action "expanded"); their expansions lost SUCCESS.
    expanded: tuple[EnvelopeRecipient, ...] = ()
    # Set when a limit was hit: Postfix does not accept the message; the reply is
    # "451 4.6.0 Alias expansion error" (text only here, the caller adds code and status).
    defer_reason: str | None = None


def _notify_set(notify: str | None) -> frozenset[str] | None:
    if notify is None:
        return None
    return frozenset(p.strip().upper() for p in notify.split(",") if p.strip())


def _notify_text(parts: frozenset[str] | None) -> str | None:
    return None if parts is None else ",".join(sorted(parts))


@dataclass
class _Collector:
    rw: Rewriter
    recipients: list[EnvelopeRecipient] = field(default_factory=list)
    failures: list[RecipientFailure] = field(default_factory=list)
    expanded: list[EnvelopeRecipient] = field(default_factory=list)
    seen: set[tuple[str, ...]] = field(default_factory=set)
    defer_reason: str | None = None

    def duplicate(self, r: EnvelopeRecipient) -> bool:
        s = self.rw.settings
        if s.enable_original_recipient:
            key: tuple[str, ...] = (
                (r.orcpt or "").lower(), _notify_text(_notify_set(r.notify)) or "",
                (r.orig_rcpt or "").lower(), r.address.lower())
        else:
            key = (r.address.lower(),)
        if key in self.seen:
            return True
        if not s.duplicate_filter_limit or len(self.seen) < s.duplicate_filter_limit:
            self.seen.add(key)
        return False

    async def out_recipient(self, r: EnvelopeRecipient) -> None:
        """cleanup_out_recipient: expand, adjust NOTIFY, drop duplicates, refuse unknowns."""
        rw = self.rw
        orig = r.orig_rcpt if r.orig_rcpt is not None else r.address
        addresses = [r.address]
        if rw.settings.virtual_alias_maps:
            addresses = await self.map1n(r.address)
        notify = _notify_set(r.notify)
        if notify and "SUCCESS" in notify and (len(addresses) > 1 or addresses[0] != r.address):
            self.expanded.append(replace(r, orig_rcpt=orig))
            notify = notify - {"SUCCESS"} or frozenset({"NEVER"})
        for address in addresses:
            out = EnvelopeRecipient(address, orig, _notify_text(notify), r.orcpt)
            if self.duplicate(out):
                rw.trace.add(Step("duplicate filter", address, (), note="duplicate dropped"))
                continue
            _, domain = split_address(address)
            if domain and await rw.classifier.classify(domain) is AddressClass.VIRTUAL_ALIAS:
                s = rw.settings
                self.failures.append(RecipientFailure(out, s.unknown_code, "5.1.1",
                                                      s.unknown_text))
                rw.trace.add(Step("virtual_alias_domains", address, (),
                                  note=f"5.1.1 {s.unknown_text}"))
                continue
            self.recipients.append(out)

    async def map1n(self, address: str) -> list[str]:
        """cleanup_map1n: recursive one-to-many expansion of one recipient."""
        rw, s = self.rw, self.rw.settings
        propagate = "virtual" in s.propagate
        argv = [address]
        been_here: set[str] = set()
        index = 0
        while index < len(argv):
            if len(argv) > s.expansion_limit:
                return self.limit(address, "unreasonable virtual_alias_maps expansion size")
            for count in range(s.recursion_limit + 1):
                current = argv[index]
                if current.lower() in been_here:
                    break
                if count >= s.recursion_limit:
                    return self.limit(address, "unreasonable virtual_alias_maps nesting")
                results = await rw.map_address("virtual_alias_maps", s.virtual_alias_maps,
                                               current, propagate)
                if results is None:
                    break
                for i, result in enumerate(results):
                    if len(result) > s.address_length_limit:
                        return self.limit(address, "unreasonable virtual_alias_maps result")
                    if i == 0:
                        argv[index] = result
                    else:
                        argv.append(result)
                    if result.lower() == current.lower():
                        been_here.add(current.lower())  # expands to itself: stop here
            index += 1
        return argv

    def limit(self, address: str, why: str) -> list[str]:
        self.rw.warn(f"{why} for {address} -- message not accepted, try again later")
        self.rw.trace.add(Step("virtual_alias_maps", address, (address,), note=why))
        self.defer_reason = EXPANSION_ERROR
        return [address]

    async def bcc(self, address: str, stage: str) -> None:
        """cleanup_addr_bcc: rewritten in the local context as an envelope recipient."""
        rw = self.rw
        clean = rw.complete(address, "local")
        clean = await rw.mappings(clean, "envelope_recipient")
        rw.trace.add(Step(stage, address, (clean,), note="automatic BCC recipient"))
        await self.out_recipient(EnvelopeRecipient(clean, clean, "NEVER"))

    async def bcc_lookup(self, stage: str, specs: Sequence[str], address: str) -> None:
        found = await self.rw.find(specs, address)
        m = found.match
        self.rw.trace.add(Step(stage, address, (m.value,) if m else (), tuple(specs),
                               found.keys, m.table if m else None, m.key if m else None,
                               m.value if m else None, note="" if m else "no match"))
        if m is not None and m.value.strip():
            await self.bcc(m.value.strip(), stage)


async def expand(rw: Rewriter, recipients: Sequence[EnvelopeRecipient], *, sender: str
                 ) -> ExpandResult:
    """All recipients of one message, in the order cleanup writes them."""
    s = rw.settings
    out = _Collector(rw)
    if sender and s.sender_bcc_maps:
        await out.bcc_lookup("sender_bcc_maps", s.sender_bcc_maps, sender)
    for r in recipients:
        await out.out_recipient(r)
        if r.address and s.recipient_bcc_maps:
            await out.bcc_lookup("recipient_bcc_maps", s.recipient_bcc_maps, r.address)
    if s.always_bcc:
        await out.bcc(s.always_bcc, "always_bcc")
    return ExpandResult(tuple(out.recipients), tuple(out.failures), tuple(out.expanded),
                        out.defer_reason)
