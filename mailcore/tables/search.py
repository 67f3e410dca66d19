"""Postfix's key-search orders over a list of tables.

Owns: which keys are tried, in which order, for an address (canonical/virtual/relocated, as
Postfix's mail_addr_find), for check_*_access (address, hostname, IP address) and for
transport-style domain lookups; and which of those keys pattern tables may see.
Must not: know which parameter the tables came from, or interpret the result.
Invariants: the search is key-major, as Postfix's maps_find: every table is asked for the
first key before any table is asked for the next one, and within one key the first table
with a hit wins. Pattern tables (regexp, pcre, cidr) are asked only the first, full key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailcore.tables.base import Table


@dataclass(frozen=True)
class Match:
    table: str  # the spec of the table that answered
    key: str  # the key that matched
    value: str


async def search_keys(tables: Sequence[Table], keys: Sequence[str]) -> Match | None:
    """Try keys in order; keys after the first are partial and skip pattern tables."""
    for index, key in enumerate(keys):
        if not key:
            continue
        for table in tables:
            if index > 0 and table.is_pattern:
                continue
            value = await table.get(key)
            if value is not None:
                return Match(table.spec, key, value)
    return None


def split_extension(localpart: str, delimiter: str) -> tuple[str, str] | None:
    """(user, extension-with-delimiter) when localpart has an extension, as Postfix splits it.

    Every character of ``delimiter`` is a delimiter; owner-foo and foo-request are never split
    when "-" is one; a localpart that starts with a delimiter is not split.
    """
    if not delimiter:
        return None
    low = localpart.lower()
    special = low.startswith("owner-") or (len(low) > 8 and low.endswith("-request"))
    if "-" in delimiter and special:
        return None
    pos = next((i for i, c in enumerate(localpart) if c in delimiter), -1)
    if pos <= 0:
        return None
    return localpart[:pos], localpart[pos:]


def _addr_parts(address: str, delimiter: str) -> tuple[str, str | None, str | None]:
    """(localpart, bare localpart without extension or None, domain or None)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    split = split_extension(local, delimiter)
    return local, (split[0] if split else None), (domain if at else None)


def domain_keys(domain: str, match_subdomains: bool) -> list[str]:
    """Keys for a domain and its parents, including the top-level domain, like Postfix."""
    keys = [domain]
    rest = domain
    while True:
        dot = rest.find(".", 1)
        if dot < 0 or dot == len(rest) - 1:
            return keys
        rest = rest[dot + 1 :]
        keys.append(rest if match_subdomains else "." + rest)


async def lookup_address(
    tables: Sequence[Table],
    address: str,
    *,
    delimiter: str = "",
    is_local_domain: Callable[[str], bool] = lambda d: False,
) -> Match | None:
    """canonical/virtual/relocated search: user+ext@domain, user@domain, then (local domain
    only) user+ext and user, then @domain."""
    local, bare, domain = _addr_parts(address, delimiter)
    keys = [address]
    if bare is not None:
        keys.append(f"{bare}@{domain}" if domain is not None else bare)
    if domain is not None:
        if is_local_domain(domain):
            keys.append(local)
            if bare is not None:
                keys.append(bare)
        keys.append("@" + domain)
    return await search_keys(tables, keys)


def _ip_keys(address: str) -> list[str]:
    delim = ":" if ":" in address else "."
    keys = [address]
    rest = address
    while delim in rest:
        rest = rest[: rest.rfind(delim)]
        if rest:
            keys.append(rest)
    return keys


async def lookup_access(
    tables: Sequence[Table],
    kind: str,
    value: str,
    *,
    match_subdomains: bool,
    delimiter: str = "",
) -> Match | None:
    """check_*_access search for kind "address", "hostname" or "ipaddr" (access(5))."""
    if kind == "hostname":
        keys = domain_keys(value, match_subdomains)
    elif kind == "ipaddr":
        keys = _ip_keys(value)
    elif kind == "address":
        local, bare, domain = _addr_parts(value, delimiter)
        keys = [value]
        if bare is not None:
            keys.append(f"{bare}@{domain}" if domain is not None else bare)
        if domain is not None:
            if domain:
                keys.extend(domain_keys(domain, match_subdomains))
            keys.append(local + "@")
            if bare is not None:
                keys.append(bare + "@")
    else:
        raise ValueError(f"unknown access lookup kind: {kind}")
    return await search_keys(tables, keys)


async def lookup_domain(
    tables: Sequence[Table],
    domain: str,
    *,
    match_subdomains: bool,
    address: str | None = None,
    delimiter: str = "",
) -> Match | None:
    """transport-style search: domain, then ``.parent`` (or ``parent`` with match_subdomains).

    With ``address``, the full address and its extension-less form are tried first (Postfix's
    transport lookup), and pattern tables then see only the address.
    """
    keys: list[str] = []
    if address is not None:
        keys.append(address)
        _, bare, dom = _addr_parts(address, delimiter)
        if bare is not None:
            keys.append(f"{bare}@{dom}" if dom is not None else bare)
    keys.extend(domain_keys(domain, match_subdomains))
    return await search_keys(tables, keys)
