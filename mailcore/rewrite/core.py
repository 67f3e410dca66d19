"""The Rewriter: Postfix's cleanup address rewriting and trivial-rewrite's "rewrite" service.

Owns: per-address rewriting in Postfix's order — trivial-rewrite completion (source route,
swap_bangpath, allow_percent_hack, append_at_myorigin, append_dot_mydomain), the
MAILER-DAEMON sender becoming <>, sender/recipient canonical maps, canonical_maps, address
masquerading — each gated by its *_classes; relocated_maps lookups; and the resolver's
stripping of routing inside local domains (``unroute``).
Must not: touch the queue or decide transports; raise for an unknown user (callers get
values); keep state between calls other than the optional trace.
Invariants: addresses are in external (quoted) form in and out; table lookups use
mail_addr_find's key order; a one-to-one map is applied at most 10 times and stops when an
address maps to itself. Lookup failures raise TableError for the caller to defer.
Parameters: see RewriteSettings (rewrite/settings.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mailcore.addrclass import DomainClassifier
from mailcore.config import Config
from mailcore.errors import TableError
from mailcore.model import EnvelopeRecipient
from mailcore.rewrite.expand import ExpandResult, expand
from mailcore.rewrite.forms import (
    Completion,
    add_extension,
    address_keys,
    find_unquoted,
    masquerade,
    quote_internal,
    result_addresses,
    rewrite_tree,
    split_address,
    unquote_local,
)
from mailcore.rewrite.headers import rewrite_header
from mailcore.rewrite.settings import RewriteSettings, Step, Trace, Warn
from mailcore.tables import SUPPORTED_TYPES, Match, Table, TableSet, split_table_spec
from mailcore.tables.search import search_keys

MAX_MAP11_RECURSION = 10  # cleanup_map11's fixed limit
SENDER_CLASSES = ("envelope_sender", "header_sender")
_log = logging.getLogger("mailcore.rewrite")


@dataclass(frozen=True)
class Found:
    match: Match | None
    extension: str | None  # the extension stripped to find the match (with its delimiter)
    keys: tuple[str, ...]  # the keys tried, the matching one last


class Rewriter:
    """One per Config snapshot (or per ``mailcore route`` run with ``trace=True``).

    With tracing on, every step is appended to ``steps``; a traced Rewriter is meant for one
    explanation at a time, not for sharing between concurrent sessions.
    """

    def __init__(self, config: Config, tables: TableSet, classifier: DomainClassifier, *,
                 trace: bool = False, warn: Warn | None = None) -> None:
        self.settings = RewriteSettings.from_config(config)
        self.tables = tables
        self.classifier = classifier
        self.trace = Trace(enabled=trace)
        self.warn: Warn = warn or _log.warning
        self._exceptions = _name_items(self.settings.masquerade_exceptions, tables)

    @property
    def steps(self) -> list[Step]:
        return self.trace.steps

    def take_steps(self) -> tuple[Step, ...]:
        steps = tuple(self.trace.steps)
        self.trace.steps.clear()
        return steps

    # ------------------------------------------------------------------ envelope
    async def rewrite_sender(self, address: str, *, context: str = "local") -> str:
        """Envelope sender as cleanup writes it. Postfix always uses the local context for
        envelopes (also from remote clients); pass "remote" only to reproduce that context."""
        if not address:
            return ""
        addr = self.complete(address, context)
        daemon = rewrite_tree("MAILER-DAEMON", self.settings.local)[0]
        if addr.lower() == daemon.lower():
            self.trace.add(Step("null sender", addr, ("",),
                                note="MAILER-DAEMON@$myorigin is the null sender"))
            return ""
        return await self.mappings(addr, "envelope_sender")

    async def rewrite_recipient(self, address: str, *, context: str = "local") -> str:
        """Envelope recipient as cleanup writes it, before virtual alias expansion."""
        if not address:
            address = self.settings.empty_address_recipient
        addr = self.complete(address, context)
        return await self.mappings(addr, "envelope_recipient")

    def complete(self, address: str, context: str) -> str:
        """trivial-rewrite's rewrite request in "local" or "remote" context."""
        result, applied = rewrite_tree(address, self._completion(context))
        self.trace.add(Step(f"rewrite ({context})", address, (result,),
                            note=", ".join(applied)))
        return result

    def _completion(self, context: str) -> Completion:
        s = self.settings
        if context == "local":
            return s.local
        if context == "remote":
            return s.remote or Completion("", "", False, False, s.local.swap_bangpath,
                                          s.local.percent_hack)
        raise ValueError(f"rewrite context must be 'local' or 'remote', not {context!r}")

    async def mappings(self, address: str, cls: str) -> str:
        """Canonical maps and masquerading for one address class, in cleanup's order."""
        s = self.settings
        if cls in SENDER_CLASSES:
            first, first_classes = "sender_canonical_maps", s.sender_canonical_classes
            first_maps = s.sender_canonical_maps
        else:
            first, first_classes = "recipient_canonical_maps", s.recipient_canonical_classes
            first_maps = s.recipient_canonical_maps
        propagate = "canonical" in s.propagate
        if first_maps and cls in first_classes:
            address = await self.map11(first, first_maps, address, propagate)
        if s.canonical_maps and cls in s.canonical_classes:
            address = await self.map11("canonical_maps", s.canonical_maps, address, propagate)
        if s.masquerade_domains and cls in s.masquerade_classes:
            address = await self.masquerade(address)
        return address

    async def expand_recipients(self, recipients: Sequence[EnvelopeRecipient], *,
                                sender: str) -> ExpandResult:
        """After canonical mapping: virtual aliases, automatic BCC, duplicates (expand.py).
        ``sender`` is the rewritten envelope sender ("" for the null sender)."""
        return await expand(self, recipients, sender=sender)

    async def rewrite_header(self, name: str, value: str, *, context: str) -> str:
        """Addresses in one header (value without "Name:"), per header_sender /
        header_recipient; context from header_rewrite_context (headers.py)."""
        if context not in ("local", "remote"):
            raise ValueError(f"rewrite context must be 'local' or 'remote', not {context!r}")
        return await rewrite_header(self, name, value, context=context)

    # ------------------------------------------------------------------ lookups
    async def is_local_or_origin(self, domain: str) -> bool:
        low = domain.lower().rstrip(".")
        return low == self.settings.myorigin or await self.classifier.is_local(low)

    async def find(self, specs: Sequence[str], address: str) -> Found:
        """mail_addr_find: the match, the extension it left unmatched, the keys tried."""
        tables = [self.tables.open(spec) for spec in specs]
        _, domain = split_address(address)
        local_domain = domain is not None and await self.is_local_or_origin(domain)
        keys = address_keys(address, self.settings.delimiter, local_domain=local_domain)
        match = await search_keys(tables, [k for k, _ in keys])
        index = next((i for i, (k, _) in enumerate(keys) if match and k == match.key), -1)
        tried = tuple(k for k, _ in (keys[: index + 1] if index >= 0 else keys))
        return Found(match, keys[index][1] if index >= 0 else None, tried)

    async def map_address(self, stage: str, specs: Sequence[str], address: str,
                          propagate: bool) -> list[str] | None:
        """mail_addr_map: the canonicalised result addresses, or None without a match."""
        found = await self.find(specs, address)
        match, ext = found.match, found.extension
        if match is None:
            self.trace.add(Step(stage, address, (address,), tuple(specs), found.keys,
                                note="no match"))
            return None
        value = match.value.strip()
        if value.startswith("@"):
            # @otherdomain keeps the original user (its extension is re-added below).
            user = unquote_local(split_address(address)[0])
            if ext:
                user = user[: -len(ext)]
            value = quote_internal(user) + value
        results = [rewrite_tree(a, self.settings.local)[0] for a in result_addresses(value)]
        if propagate and ext:
            results = [add_extension(a, ext) for a in results]
        self.trace.add(Step(stage, address, tuple(results), tuple(specs), found.keys,
                            match.table, match.key, match.value,
                            note=f"extension {ext} propagated" if propagate and ext else ""))
        if not results:
            raise TableError(f"{match.table} lookup of {address} returns non-address result "
                             f'"{match.value}"')
        return results

    async def map11(self, stage: str, specs: Sequence[str], address: str,
                    propagate: bool) -> str:
        """cleanup_map11: one-to-one, repeated until the address maps to itself."""
        for _ in range(MAX_MAP11_RECURSION):
            results = await self.map_address(stage, specs, address, propagate)
            if results is None:
                return address
            if len(results) > 1:
                self.warn(f"multi-valued {stage} entry for {address}")
            previous, address = address, results[0]
            if previous.lower() == address.lower():
                return address
        self.warn(f"unreasonable {stage} map nesting for {address}")
        return address

    async def masquerade(self, address: str) -> str:
        local, domain = split_address(address)
        if domain is None:
            return address
        if await _name_list_match(self._exceptions, local.lower()):
            self.trace.add(Step("masquerade_domains", address, (address,),
                                note=f"{local} is in masquerade_exceptions"))
            return address
        result = masquerade(address, self.settings.masquerade_domains)
        self.trace.add(Step("masquerade_domains", address, (result,),
                            note="" if result != address else "no masquerade domain applies"))
        return result

    async def relocated(self, address: str) -> str | None:
        """relocated_maps: the new location text for a moved user, or None."""
        if not self.settings.relocated_maps or not address:
            return None
        found = await self.find(self.settings.relocated_maps, address)
        match = found.match
        self.trace.add(Step("relocated_maps", address, (address,),
                            self.settings.relocated_maps, found.keys,
                            match.table if match else None, match.key if match else None,
                            match.value if match else None,
                            note=f"User has moved to {match.value}" if match else "no match"))
        return match.value if match else None

    # ------------------------------------------------------------------ resolver helper
    async def unroute(self, address: str) -> str:
        """The recipient trivial-rewrite's resolver derives: local domains stripped, then
        ``u%d``, ``d!u`` and ``u@d`` inside them turned into ``u@d``, until the domain is
        remote or none is left (then the last local domain, else $myhostname, returns)."""
        s = self.settings
        addr, saved = address, None
        for _ in range(len(address) + 100):
            if addr.endswith(".") and "@" in addr and not addr.endswith(".."):
                addr = addr[:-1]
            addr = addr[:-1] if addr.endswith("@") else addr
            local, domain = split_address(addr)
            if domain is not None:
                if not await self.classifier.is_local(domain):
                    break
                addr, saved = local, domain
            if _has_routing(addr, s.local):
                addr = rewrite_tree(addr, s.local)[0]
                continue
            cracked = self._dequote_routing(addr) if s.resolve_dequoted_address else None
            if cracked is not None:
                addr = rewrite_tree(cracked, s.local)[0]
                continue
            if addr in ("", '""'):
                addr = s.empty_address_recipient
            addr = f"{addr}@{saved if saved is not None else s.myhostname}"
            break
        if addr != address:
            self.trace.add(Step("resolve", address, (addr,),
                                note="routing inside a local domain stripped"))
        return addr

    def _dequote_routing(self, local: str) -> str | None:
        """resolve_dequoted_address: look for @, % or ! inside a quoted local part."""
        if not (len(local) >= 2 and local[0] == '"' and local[-1] == '"'):
            return None
        inner = unquote_local(local)
        s = self.settings.local
        for op in ("@", "%" if s.percent_hack else "", "!" if s.swap_bangpath else ""):
            if op and op in inner:
                if op == "!":
                    return inner
                pos = inner.rfind(op)
                return f"{quote_internal(inner[:pos])}@{inner[pos + 1:]}"
        return None


def _has_routing(local: str, ctx: Completion) -> bool:
    return (find_unquoted(local, "@", last=True) >= 0
            or (ctx.swap_bangpath and find_unquoted(local, "!", last=False) >= 0)
            or (ctx.percent_hack and find_unquoted(local, "%", last=True) >= 0))


# ---------------------------------------------------------------- string lists
NameItem = tuple[bool, str, Table | None]


def _name_items(items: Sequence[str], tables: TableSet) -> list[NameItem]:
    """A Postfix string list (masquerade_exceptions): names, ``!name``, ``type:table``."""
    out: list[NameItem] = []
    for raw in items:
        negate, text = False, raw
        while text.startswith("!"):
            negate, text = not negate, text[1:]
        table = None
        if ":" in text and split_table_spec(text)[0] in SUPPORTED_TYPES:
            table = tables.open(text)
        out.append((negate, text.lower(), table))
    return out


async def _name_list_match(items: Sequence[NameItem], name: str) -> bool:
    for negate, text, table in items:
        hit = (await table.get(name) is not None) if table is not None else text == name
        if hit:
            return not negate
    return False


def orig_of(recipient: EnvelopeRecipient) -> str:
    return recipient.orig_rcpt if recipient.orig_rcpt is not None else recipient.address
