"""Postfix's address classes: which kind of destination a recipient domain is.

Owns: deciding, for a domain, whether it is local (mydestination, or ``[ip]`` of
inet_interfaces/proxy_interfaces), virtual alias (virtual_alias_domains), virtual mailbox
(virtual_mailbox_domains), relay (relay_domains) or default, in that order, as
trivial-rewrite(8) does.

Must not: pick transports or nexthops (rewrite.resolve does) or do DNS.

Invariants: a domain is compared lower-cased without a trailing dot; an empty domain is local
(it is a bare local part that will get $myorigin). Parameters: mydestination,
inet_interfaces, proxy_interfaces, virtual_alias_domains, virtual_mailbox_domains,
relay_domains.
"""

from __future__ import annotations

import enum
import ipaddress

from mailcore.config import Config
from mailcore.netinfo import interface_addresses
from mailcore.tables import TableSet
from mailcore.tables.matchlist import DomainList


class AddressClass(enum.Enum):
    LOCAL = "local"
    VIRTUAL_ALIAS = "virtual_alias"
    VIRTUAL_MAILBOX = "virtual_mailbox"
    RELAY = "relay"
    DEFAULT = "default"


class DomainClassifier:
    """Built once per Config snapshot; ``await classify(domain)``."""

    def __init__(self, config: Config, tables: TableSet):
        self._mydestination = DomainList(config.get_list("mydestination"), tables,
                                         match_subdomains=False)
        self._virtual_alias = DomainList(config.get_list("virtual_alias_domains"), tables,
                                         match_subdomains=False)
        self._virtual_mailbox = DomainList(config.get_list("virtual_mailbox_domains"), tables,
                                           match_subdomains=False)
        self._relay = DomainList(
            config.get_list("relay_domains"), tables,
            match_subdomains="relay_domains" in config.get_list("parent_domain_matches_subdomains"))
        self._own_addresses = _own_addresses(config)

    async def classify(self, domain: str) -> AddressClass:
        name = domain.lower().rstrip(".")
        if not name or await self.is_local(name):
            return AddressClass.LOCAL
        if await self._virtual_alias.matches(name):
            return AddressClass.VIRTUAL_ALIAS
        if await self._virtual_mailbox.matches(name):
            return AddressClass.VIRTUAL_MAILBOX
        if await self._relay.matches(name):
            return AddressClass.RELAY
        return AddressClass.DEFAULT

    async def is_local(self, domain: str) -> bool:
        name = domain.lower().rstrip(".")
        if name.startswith("[") and name.endswith("]"):
            return _literal_address(name) in self._own_addresses
        return await self._mydestination.matches(name)


def _literal_address(literal: str) -> str:
    inner = literal[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return ""


def _own_addresses(config: Config) -> frozenset[str]:
    """Addresses mail to ``user@[addr]`` counts as local for: inet_interfaces + proxy."""
    items = [*config.get_list("inet_interfaces"), *config.get_list("proxy_interfaces")]
    addresses: set[str] = set()
    for item in items:
        lowered = item.lower()
        if lowered in ("all", "loopback-only", "localhost"):
            loopback_only = lowered != "all"
            addresses.update(
                str(i.ip) for i in interface_addresses()
                if not loopback_only or i.ip.is_loopback
            )
            continue
        try:
            addresses.add(str(ipaddress.ip_address(item.strip("[]"))))
        except ValueError:
            continue  # a host name: Postfix resolves it; mailcore never does DNS here
    return frozenset(addresses)
