"""DNS lookups for mailcore, through dnspython's asynchronous resolver.

Owns: building a resolver from main.cf (``dns_nameservers``, mailcore's own host[:port] list,
empty = the system's resolv.conf; ``dns_timeout``), the lookups smtpd needs (PTR, A+AAAA and
Postfix's forward-confirmed reverse lookup of a client), the lookups smtpd's restrictions
need (MX, TXT for DNS block lists, "can this domain receive mail" as A/AAAA/MX) and the
classification of every answer as found / not found (NXDOMAIN, no data: permanent) /
temporary (SERVFAIL, timeout, no answer from any server).

Must not: retry on its own (callers decide), raise dnspython exceptions to callers, or use the
system's getaddrinfo/gethostbyaddr. MX lookups (issue 5) belong here too, as more methods on
``Resolver`` returning ``DnsResult``.

Invariants: every lookup returns a ``DnsResult``; names come back lower-case, without the
trailing dot; addresses in their compressed text form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailcore.config import Config
from mailcore.errors import ConfigError

FOUND = "found"
NOT_FOUND = "not_found"  # NXDOMAIN or no records of the type: a permanent answer
TEMPORARY = "temporary"  # SERVFAIL, timeout, refused: try again later

UNKNOWN = "unknown"
MAX_PTR_NAMES = 10  # Postfix looks at a bounded number of PTR records too
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")


@dataclass(frozen=True)
class DnsResult:
    """The outcome of one lookup: ``status`` is FOUND, NOT_FOUND or TEMPORARY."""

    status: str
    values: tuple[str, ...] = ()
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.status == FOUND

    @property
    def temporary(self) -> bool:
        return self.status == TEMPORARY


@dataclass(frozen=True)
class ClientNames:
    """Postfix's client name facts: ``name`` is forward-confirmed or "unknown";
    ``reverse_name`` is the PTR name whether or not it confirms. ``status`` says why a name
    is unknown: FOUND (it is not), NOT_FOUND (permanent) or TEMPORARY (4xx-worthy)."""

    name: str = UNKNOWN
    reverse_name: str = UNKNOWN
    status: str = FOUND
    reverse_status: str = FOUND
    detail: str = ""

    def __iter__(self):  # type: ignore[no-untyped-def]
        # Lets callers write ``name, reverse = await resolver.client_name(addr)``.
        return iter((self.name, self.reverse_name))


def parse_nameservers(items: tuple[str, ...] | list[str]) -> list[tuple[str, int]]:
    """``dns_nameservers`` items: ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6."""
    servers: list[tuple[str, int]] = []
    for item in items:
        host, port = item, 53
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigError(f"dns_nameservers: bad entry {item!r}")
            if rest:
                port = _port(rest[1:], item)
        elif item.count(":") == 1:
            host, _, text = item.partition(":")
            port = _port(text, item)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"dns_nameservers: {item!r} is not an IP address (a name would need DNS itself)"
            ) from None
        servers.append((host, port))
    return servers


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"dns_nameservers: bad port in {item!r}")
    return int(text)


class Resolver:
    """Lookups through one dnspython resolver; build with ``Resolver.from_config``."""

    def __init__(self, nameservers: list[tuple[str, int]] | None = None, timeout: float = 5.0):
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.cache = None  # answers may change between tests and reloads; no stale data
        self._resolver = resolver

    @classmethod
    def from_config(cls, config: Config) -> Resolver:
        return cls(parse_nameservers(config.get_list("dns_nameservers")),
                   config.get_time("dns_timeout"))

    async def query(self, name: str, rdtype: str) -> DnsResult:
        """One lookup of ``rdtype`` records, classified; never raises dnspython errors."""
        return await self._lookup(name, rdtype, _text)

    async def _lookup(self, name: str, rdtype: str,
                      render: Callable[[object], str]) -> DnsResult:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False,
                                                  raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return DnsResult(NOT_FOUND, detail=f"{name}: host not found")
        except (dns.resolver.NoNameservers, dns.exception.Timeout,
                dns.resolver.LifetimeTimeout) as exc:
            return DnsResult(TEMPORARY, detail=f"{name}: {type(exc).__name__}")
        except (dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return DnsResult(NOT_FOUND, detail=f"{name}: no {rdtype} record")
        except dns.exception.DNSException as exc:
            return DnsResult(TEMPORARY, detail=f"{name}: {type(exc).__name__}")
        if answer.rrset is None:
            return DnsResult(NOT_FOUND, detail=f"{name}: no {rdtype} record")
        return DnsResult(FOUND, tuple(render(rdata) for rdata in answer.rrset))

    async def mx(self, name: str) -> DnsResult:
        """MX records as ``"preference host"`` (host lower-case, no trailing dot), best first."""
        result = await self._lookup(name, "MX", _mx_text)
        if not result.found:
            return result
        ordered = sorted(result.values, key=lambda v: (int(v.split(" ", 1)[0]), v))
        return DnsResult(FOUND, tuple(ordered))

    async def txt(self, name: str) -> DnsResult:
        """TXT records, each record's strings joined, decoded as UTF-8."""
        return await self._lookup(name, "TXT", _txt_text)

    async def mail_domain(self, name: str) -> DnsResult:
        """Whether a domain can receive mail at all: an A, AAAA or MX record (Postfix's
        reject_unknown_*_domain). The first type found answers; TEMPORARY wins over
        NOT_FOUND when nothing is found."""
        temporary: DnsResult | None = None
        for rdtype in ("A", "AAAA", "MX"):
            result = await self.query(name, rdtype)
            if result.found:
                return result
            if result.temporary:
                temporary = temporary or result
            elif result.detail.endswith("host not found"):
                break  # NXDOMAIN: no other type can exist
        return temporary or DnsResult(NOT_FOUND, detail=f"{name}: host not found")

    async def ptr(self, address: str) -> DnsResult:
        try:
            name = dns.reversename.from_address(address).to_text()
        except (ValueError, dns.exception.SyntaxError):
            return DnsResult(NOT_FOUND, detail=f"{address}: not an IP address")
        return await self.query(name, "PTR")

    async def addresses(self, name: str) -> DnsResult:
        """A and AAAA together: FOUND when either has records; TEMPORARY wins over
        NOT_FOUND so a half-failed lookup is retried, not treated as final."""
        results = [await self.query(name, "A"), await self.query(name, "AAAA")]
        values = tuple(v for r in results for v in r.values)
        if values:
            return DnsResult(FOUND, values)
        if any(r.temporary for r in results):
            return DnsResult(TEMPORARY, detail="; ".join(r.detail for r in results))
        return DnsResult(NOT_FOUND, detail=results[0].detail)

    async def client_name(self, address: str) -> ClientNames:
        """Forward-confirmed reverse DNS as Postfix's smtpd_peer does it."""
        reverse = await self.ptr(address)
        if not reverse.found:
            return ClientNames(status=reverse.status, reverse_status=reverse.status,
                               detail=reverse.detail)
        names = [n for n in reverse.values[:MAX_PTR_NAMES] if _valid_hostname(n)]
        if not names:
            return ClientNames(status=NOT_FOUND, reverse_status=NOT_FOUND,
                               detail=f"{address}: PTR is not a valid host name")
        wanted = ipaddress.ip_address(address)
        status, detail = NOT_FOUND, ""
        for name in names:
            forward = await self.addresses(name)
            if forward.found and any(_same(v, wanted) for v in forward.values):
                return ClientNames(name, names[0])
            if forward.temporary:
                status = TEMPORARY
            detail = f"hostname {name} does not resolve to address {address}"
        return ClientNames(UNKNOWN, names[0], status=status, detail=detail)


def _text(rdata: object) -> str:
    text = rdata.to_text()  # type: ignore[attr-defined]
    if getattr(rdata, "rdtype", None) in (dns.rdatatype.PTR, dns.rdatatype.CNAME):
        return text.rstrip(".").lower()
    return text


def _mx_text(rdata: object) -> str:
    preference = getattr(rdata, "preference", 0)
    exchange = str(getattr(rdata, "exchange", "")).rstrip(".").lower()
    return f"{preference} {exchange}"


def _txt_text(rdata: object) -> str:
    strings = getattr(rdata, "strings", ())
    return b"".join(strings).decode("utf-8", "replace")


def _valid_hostname(name: str) -> bool:
    # A PTR that spells a numeric address could make a client look like another one.
    if not _HOSTNAME.match(name):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return not name.replace(".", "").isdigit()
    return False


def _same(text: str, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(text) == wanted
    except ValueError:
        return False
