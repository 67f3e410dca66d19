"""Postfix match lists: DomainList (mydestination, relay_domains, virtual_*_domains) and
AddressList (mynetworks and other host name/address lists).

Owns: list item syntax (comma/space separated, ``!`` negation, ``/file/name`` items expanded
one file line at a time, ``type:table`` items, ``.domain`` items, parent-domain matching,
CIDR networks and ``[ipv6]/len``) and first-match-wins evaluation.
Must not: decide which parameters use parent_domain_matches_subdomains (the caller passes it).
Invariants: items are parsed once, when the list is built, and errors name the file and line
of a ``/file`` item; matching is case-insensitive; the first matching item decides, and a
negated item that matches means "no match".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailcore.errors import TableError
from mailcore.tables.base import Table, logical_lines, read_text, split_braced
from mailcore.tables.cidr import Address, Network, address_in, parse_address, parse_network
from mailcore.tables.search import domain_keys, search_keys

if TYPE_CHECKING:
    from mailcore.tables import TableSet

_MAX_FILE_DEPTH = 10


@dataclass(frozen=True)
class _Item:
    negate: bool
    text: str  # lower-cased pattern text for names
    table: Table | None = None
    network: Network | None = None


def _looks_like_table(text: str, known: Sequence[str]) -> bool:
    if text.startswith("[") or ":" not in text:
        return False
    kind = text.split(":", 1)[0].lower()
    if kind in known:
        return True
    # An unknown "word:" is a table of an unsupported type, unless it parses as IPv6.
    return kind.isalpha() and parse_address(text.split("/", 1)[0]) is None


def _parse_items(
    items: Sequence[str],
    tables: TableSet,
    *,
    networks: bool,
    origin: tuple[str, int] | None = None,
    depth: int = 0,
) -> list[_Item]:
    from mailcore.tables import SUPPORTED_TYPES

    out: list[_Item] = []
    for raw in items:
        for token in split_braced(raw):
            negate = False
            while token.startswith("!"):
                negate, token = not negate, token[1:]
            where = {"file": origin[0], "line": origin[1]} if origin else {}
            if not token:
                raise TableError('"!" without a pattern', **where)
            if _looks_like_table(token, SUPPORTED_TYPES):
                try:
                    table = tables.open(token)
                except TableError as exc:
                    if origin and not exc.file:
                        raise TableError(exc.message, **where) from exc
                    raise
                out.append(_Item(negate, token, table=table))
            elif token.startswith("/"):
                for item in _file_items(token, tables, networks=networks, depth=depth):
                    out.append(_Item(item.negate != negate, item.text, item.table, item.network))
            elif networks and (token[0].isdigit() or token.startswith("[") or ":" in token):
                try:
                    out.append(_Item(negate, token.lower(), network=parse_network(token)))
                except ValueError as exc:
                    # "1und1.de" is a host name; a malformed network is an error.
                    if "/" in token or token.startswith("[") or "host address bits" in str(exc):
                        raise TableError(str(exc), **where) from exc
                    out.append(_Item(negate, token.lower()))
            else:
                out.append(_Item(negate, token.lower()))
    return out


def _file_items(name: str, tables: TableSet, *, networks: bool, depth: int) -> list[_Item]:
    if depth >= _MAX_FILE_DEPTH:
        raise TableError(f"{name}: /file items nested too deeply")
    path = Path(name)
    items: list[_Item] = []
    for number, line in logical_lines(read_text(path)):
        items.extend(
            _parse_items([line], tables, networks=networks, origin=(str(path), number),
                         depth=depth + 1)
        )
    return items


def _name_matches(pattern: str, name: str, match_subdomains: bool) -> bool:
    if name == pattern:
        return True
    if pattern.startswith("."):
        return name.endswith(pattern)
    return match_subdomains and name.endswith("." + pattern)


async def _table_name_hit(table: Table, name: str, match_subdomains: bool) -> bool:
    keys = domain_keys(name, match_subdomains)
    return await search_keys([table], keys) is not None


class DomainList:
    """A domain/host name list; ``await matches(name)``."""

    def __init__(self, items: Sequence[str], tables: TableSet, *, match_subdomains: bool) -> None:
        self.match_subdomains = match_subdomains
        self._items = _parse_items(items, tables, networks=False)

    async def matches(self, name: str) -> bool:
        low = name.lower().rstrip(".")
        for item in self._items:
            if item.table is not None:
                hit = await _table_name_hit(item.table, low, self.match_subdomains)
            else:
                hit = _name_matches(item.text, low, self.match_subdomains)
            if hit:
                return not item.negate
        return False


def _addr_hit(item: _Item, addr: Address | None, text: str) -> bool:
    if item.network is not None:
        if addr is None:
            return False
        if address_in(addr, item.network):
            return True
        mapped = getattr(addr, "ipv4_mapped", None)
        return mapped is not None and address_in(mapped, item.network)
    return item.text.strip("[]") == text


class AddressList:
    """A host name/address list such as mynetworks; ``await matches(addr, hostname)``."""

    def __init__(self, items: Sequence[str], tables: TableSet, *, match_subdomains: bool) -> None:
        self.match_subdomains = match_subdomains
        self._items = _parse_items(items, tables, networks=True)

    async def matches(self, addr: str, hostname: str | None = None) -> bool:
        text = addr.strip().strip("[]").lower()
        ip = parse_address(text)
        host = hostname.lower().rstrip(".") if hostname else None
        for item in self._items:
            if item.table is not None:
                hit = host is not None and await _table_name_hit(
                    item.table, host, self.match_subdomains
                )
                hit = hit or await item.table.get(text) is not None
            else:
                hit = (host is not None and item.network is None
                       and _name_matches(item.text, host, self.match_subdomains))
                hit = hit or _addr_hit(item, ip, text)
            if hit:
                return not item.negate
        return False
