"""An in-memory stand-in for mailcore.dns.Resolver.query, for tests without sockets.

``records`` maps (name, rdtype) to rdata texts; names in ``temporary`` fail temporarily;
everything else is not found. Queries are recorded in order.
"""

from __future__ import annotations

from mailcore.dns import FOUND, NOT_FOUND, TEMPORARY, DnsResult


class FakeLookups:
    def __init__(self, records: dict[tuple[str, str], list[str]],
                 temporary: frozenset[str] = frozenset()):
        self.records = records
        self.temporary = temporary
        self.queries: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> DnsResult:
        self.queries.append((name, rdtype))
        if name in self.temporary:
            return DnsResult(TEMPORARY, detail="SERVFAIL")
        values = self.records.get((name, rdtype))
        return DnsResult(FOUND, tuple(values)) if values else DnsResult(NOT_FOUND)
