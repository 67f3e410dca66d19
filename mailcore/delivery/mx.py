"""Where the SMTP client connects: next-hop syntax, MX and address lookup, loops to myself.

Owns: parsing a transport next hop (``domain``, ``[host]``, ``host:port``, ``[host]:port``,
``[1.2.3.4]``, ``[ipv6:2001:db8::1]``), turning it into the ordered list of addresses to try
(Postfix's smtp_addr.c semantics: MX preference order, equal preferences shuffled, implicit
MX only when the domain has no MX records, RFC 7505 null MX, NXDOMAIN versus a temporary
lookup failure, truncation at the first MX that is this machine), and the wording and
enhanced status of every lookup failure.

Must not: open connections, retry lookups, or call the system resolver; every lookup goes
through the injected ``Lookups`` (mailcore.dns.Resolver in production).

Invariants: ``resolve`` never raises for DNS trouble; it returns either targets or a
``LookupFailure`` whose ``dsn`` class (4 or 5) is the temporary/permanent decision.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from mailcore.address import AddressError, domain_to_ascii
from mailcore.config import Config
from mailcore.dns import FOUND, TEMPORARY, DnsResult
from mailcore.netinfo import interface_addresses

SERVICES = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465, "lmtp": 24}
SMTP_PORT = 25


class Lookups(Protocol):
    async def query(self, name: str, rdtype: str) -> DnsResult: ...


class NexthopError(ValueError):
    """A next hop or port that cannot be parsed: a configuration problem (4.3.5)."""


@dataclass(frozen=True)
class Destination:
    host: str  # ASCII domain, host name or IP address (no brackets)
    port: int
    mx: bool  # False for [host] and IP literals: address records only
    text: str  # the next hop as written, for messages


@dataclass(frozen=True)
class Target:
    """One address to connect to."""

    hostname: str
    address: str
    port: int
    pref: int

    @property
    def name_addr(self) -> str:
        return f"{self.hostname}[{self.address}]"

    @property
    def relay(self) -> str:
        return f"{self.hostname}[{self.address}]:{self.port}"


@dataclass(frozen=True)
class LookupFailure:
    dsn: str
    reason: str
    loop: bool = False  # mail loops back to myself: no fallback relay either
    final: bool = False  # null MX: no fallback relay


@dataclass(frozen=True)
class Resolution:
    targets: tuple[Target, ...] = ()
    failure: LookupFailure | None = None
    i_am_mx: bool = False  # we are a backup MX: do not try non-MX fallback relays


@dataclass(frozen=True)
class Self:
    """What counts as this machine for loop detection."""

    hostname: str
    addresses: frozenset[str]


def parse_port(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    if text in SERVICES:
        return SERVICES[text]
    raise NexthopError(f"unknown service or bad port: {text!r}")


def split_nexthops(text: str) -> list[str]:
    """A next hop may be a list (Postfix 3.5+): separated by commas or white space."""
    return [item for item in text.replace(",", " ").split() if item]


def parse_nexthop(text: str, default_port: int) -> Destination:
    item = text.strip()
    if not item:
        raise NexthopError("empty next hop")
    port = default_port
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host:
            raise NexthopError(f"bad next hop {text!r}: missing ']'")
        if rest:
            if not rest.startswith(":"):
                raise NexthopError(f"bad next hop {text!r}: junk after ']'")
            port = parse_port(rest[1:])
        if host.lower().startswith("ipv6:"):
            host = host[5:]
        return Destination(_host(host, text), port, False, text)
    if item.count(":") == 1:
        item, _, port_text = item.partition(":")
        port = parse_port(port_text)
    elif item.count(":") > 1:  # a bare IPv6 address
        return Destination(_host(item, text), port, False, text)
    host = _host(item, text)
    return Destination(host, port, not _is_ip(host), text)


def _host(host: str, text: str) -> str:
    if _is_ip(host):
        return str(ipaddress.ip_address(host))
    try:
        return domain_to_ascii(host.rstrip("."))
    except AddressError as exc:
        raise NexthopError(f"bad next hop {text!r}: {exc}") from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def own_addresses(config: Config, interfaces: Iterable[str] | None = None) -> frozenset[str]:
    """inet_interfaces + proxy_interfaces as addresses; "all" means every interface."""
    found: set[str] = set()
    for item in (*config.get_list("inet_interfaces"), *config.get_list("proxy_interfaces")):
        lowered = item.lower()
        if lowered in ("all", "loopback-only", "localhost"):
            every = list(interfaces) if interfaces is not None else [
                str(i.ip) for i in interface_addresses()]
            found.update(a for a in every
                         if lowered == "all" or ipaddress.ip_address(a).is_loopback)
            continue
        if _is_ip(item.strip("[]")):
            found.add(str(ipaddress.ip_address(item.strip("[]"))))
    return frozenset(found)


def parse_mx(values: Iterable[str]) -> list[tuple[int, str]]:
    """MX rdata texts ("10 mx.example.") as (preference, lower-case name without dot);
    the null MX target "." becomes ""."""
    records: list[tuple[int, str]] = []
    for value in values:
        pref_text, _, exchange = value.strip().partition(" ")
        if pref_text.isdigit():
            records.append((int(pref_text), exchange.strip().rstrip(".").lower()))
    return records


def order_targets(targets: list[Target], rng: random.Random) -> list[Target]:
    """Shuffle, then sort by preference only: equal preferences end up in random order
    (Postfix's smtp_randomize_addresses with dns_rr_compare_pref_any)."""
    shuffled = list(targets)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda t: t.pref)


def truncate_at_self(targets: list[Target], me: Self) -> tuple[list[Target], Target | None]:
    """Drop the MX hosts at or below our own preference (we would be mailing ourselves)."""
    for target in targets:
        if target.address in me.addresses or (me.hostname and target.hostname == me.hostname):
            return [t for t in targets if t.pref < target.pref], target
    return targets, None


def _not_found(name: str, rdtype: str, result: DnsResult) -> str:
    suffix = ", try again" if result.temporary else ""
    return (f"Host or domain name not found. Name service error for name={name} "
            f"type={rdtype}: Host not found{suffix}")


async def host_targets(lookups: Lookups, host: str, port: int, pref: int
                       ) -> tuple[list[Target], DnsResult]:
    """A and AAAA of one host (or the host itself when it is an address)."""
    if _is_ip(host):
        return [Target(host, host, port, pref)], DnsResult(FOUND, (host,))
    results = [await lookups.query(host, "A"), await lookups.query(host, "AAAA")]
    addresses = [v for r in results for v in r.values if r.found]
    if addresses:
        return [Target(host, a, port, pref) for a in addresses], DnsResult(FOUND)
    worst = next((r for r in results if r.temporary), results[0])
    return [], worst


async def resolve(dest: Destination, lookups: Lookups, *, me: Self, loop_detect: bool,
                  rng: random.Random) -> Resolution:
    if not dest.mx:
        return await _resolve_host(dest, lookups, me=me, loop_detect=loop_detect)
    answer = await lookups.query(dest.host, "MX")
    if answer.temporary:
        return Resolution(failure=LookupFailure("4.4.3", _not_found(dest.host, "MX", answer)))
    if not answer.found:  # no MX records (or no such domain): implicit MX, RFC 5321 5.1
        targets, result = await host_targets(lookups, dest.host, dest.port, 0)
        if not targets:
            dsn = "4.4.3" if result.temporary else "5.1.2"
            return Resolution(failure=LookupFailure(dsn, _not_found(dest.host, "A", result)))
        return _loop_checked(dest, order_targets(targets, rng), me, loop_detect)
    records = parse_mx(answer.values)
    if records and all(name == "" for _, name in records):
        return Resolution(failure=LookupFailure(
            "5.1.10", f"Domain {dest.host} does not accept mail (nullMX)", final=True))
    targets: list[Target] = []
    worst: tuple[str, str] | None = None
    for pref, name in sorted(r for r in records if r[1]):
        found, result = await host_targets(lookups, name, dest.port, pref)
        targets += found
        if not found and (worst is None or result.temporary):
            worst = ("4.4.3" if result.temporary else "5.4.4", _not_found(name, "A", result))
    if not targets:
        dsn, reason = worst or ("5.4.4", f"no MX host for {dest.host} has a valid address")
        return Resolution(failure=LookupFailure(dsn, reason))
    return _loop_checked(dest, order_targets(targets, rng), me, loop_detect)


def _loop_checked(dest: Destination, targets: list[Target], me: Self,
                  loop_detect: bool) -> Resolution:
    if not loop_detect:
        return Resolution(tuple(targets))
    best = targets[0].pref
    kept, self_target = truncate_at_self(targets, me)
    if self_target is None:
        return Resolution(tuple(targets))
    if kept:
        return Resolution(tuple(kept), i_am_mx=True)
    if self_target.pref != best:
        return Resolution(failure=LookupFailure(
            "4.4.4", f"unable to find primary relay for {dest.host}"), i_am_mx=True)
    return Resolution(failure=LookupFailure(
        "5.4.6", f"mail for {dest.text} loops back to myself", loop=True), i_am_mx=True)


async def _resolve_host(dest: Destination, lookups: Lookups, *, me: Self,
                        loop_detect: bool) -> Resolution:
    targets, result = await host_targets(lookups, dest.host, dest.port, 0)
    if not targets:
        dsn = "4.4.3" if result.status == TEMPORARY else "5.1.2"
        return Resolution(failure=LookupFailure(dsn, _not_found(dest.host, "A", result)))
    if loop_detect and truncate_at_self(targets, me)[1] is not None:
        return Resolution(failure=LookupFailure(
            "5.4.6", f"mail for {dest.text} loops back to myself", loop=True))
    return Resolution(tuple(targets))
