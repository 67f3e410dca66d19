"""Postfix ``type:name`` lookup tables behind one async interface: ``await table.get(key)``.

Owns: the mapping from table type to implementation (an immutable dict, no registry filled at
run time), ``TableSet`` (the opener and per-spec cache belonging to one Config snapshot) and
the public re-exports of the search-order helpers and match lists.
Must not: know which main.cf parameter uses a table; keep any state outside a TableSet.
Invariants: ``TableSet.open`` returns the same object for the same spec until ``close``;
file-backed tables notice a changed file on their next lookup; every failure is TableError.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from mailcore.errors import TableError
from mailcore.tables.base import (
    Table,
    Warn,
    braced_name,
    log_warning,
    split_braced,
    split_table_spec,
    split_values,
)
from mailcore.tables.cidr import CidrTable
from mailcore.tables.indexed import INDEX_SUFFIX, IndexedTable, TextHashTable
from mailcore.tables.regexp import RegexpTable
from mailcore.tables.search import Match, lookup_access, lookup_address, lookup_domain
from mailcore.tables.simple import (
    EnvironTable,
    FailTable,
    InlineTable,
    PipeTable,
    StaticTable,
    UnionTable,
    UnixTable,
)
from mailcore.tables.sqlite import SqliteTable

SUPPORTED_TYPES: tuple[str, ...] = (
    "btree", "cdb", "cidr", "environ", "fail", "hash", "inline", "lmdb", "pcre", "pipemap",
    "proxy", "regexp", "sqlite", "static", "texthash", "unionmap", "unix",
)
FILE_TYPES: tuple[str, ...] = ("texthash", "regexp", "pcre", "cidr", "sqlite", *INDEX_SUFFIX)

__all__ = [
    "FILE_TYPES",
    "SUPPORTED_TYPES",
    "Match",
    "Table",
    "TableError",
    "TableSet",
    "lookup_access",
    "lookup_address",
    "lookup_domain",
    "split_table_spec",
    "split_values",
]


class ProxyTable:
    """proxy:type:name — there is no proxymap process, so it is type:name under its own spec."""

    def __init__(self, spec: str, inner: Table) -> None:
        self.spec = spec
        self.inner = inner
        self.is_pattern = inner.is_pattern

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)


class TableSet:
    """Opens and caches the tables of one Config snapshot; not shared between snapshots."""

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        warn: Warn | None = None,
        fold_case: bool = True,
    ) -> None:
        self.base_dir = base_dir
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ
        self.warn: Warn = warn or log_warning
        self.fold_case = fold_case
        self._cache: dict[str, Table] = {}

    def path(self, name: str) -> Path:
        p = Path(name)
        return self.base_dir / p if self.base_dir is not None and not p.is_absolute() else p

    def open(self, spec: str) -> Table:
        spec = spec.strip()
        table = self._cache.get(spec)
        if table is None:
            table = self._create(spec)
            self._cache[spec] = table
        return table

    def _components(self, kind: str, name: str) -> list[Table]:
        specs = split_braced(braced_name(kind, name))
        if not specs:
            raise TableError(f"{kind}:{name}: no tables between the braces")
        return [self.open(s) for s in specs]

    def _domain_list(self, items: str) -> Callable[[str], Awaitable[bool]]:
        from mailcore.tables.matchlist import DomainList

        return DomainList([items], self, match_subdomains=False).matches

    def _create(self, spec: str) -> Table:
        kind, name = split_table_spec(spec)
        fold = self.fold_case
        simple: dict[str, Callable[[], Table]] = {
            "proxy": lambda: ProxyTable(spec, self.open(name)),
            "static": lambda: StaticTable(spec, name),
            "inline": lambda: InlineTable(spec, name),
            "environ": lambda: EnvironTable(spec, self.environ),
            "fail": lambda: FailTable(spec),
            "unix": lambda: UnixTable(spec, name),
            "unionmap": lambda: UnionTable(spec, self._components(kind, name)),
            "pipemap": lambda: PipeTable(spec, self._components(kind, name)),
            "texthash": lambda: TextHashTable(spec, self.path(name), fold=fold, warn=self.warn),
            "regexp": lambda: RegexpTable(spec, self.path(name), pcre=False, warn=self.warn),
            "pcre": lambda: RegexpTable(spec, self.path(name), pcre=True, warn=self.warn),
            "cidr": lambda: CidrTable(spec, self.path(name), warn=self.warn),
            "sqlite": lambda: SqliteTable(spec, self.path(name), domain_list=self._domain_list),
        }
        if kind in simple:
            return simple[kind]()
        if kind in INDEX_SUFFIX:
            return IndexedTable(spec, kind, self.path(name), fold=fold, warn=self.warn)
        raise TableError(f"unsupported dictionary type: {kind}")

    def close(self) -> None:
        for table in self._cache.values():
            closer = getattr(table, "close", None)
            if callable(closer):
                closer()
        self._cache.clear()


from mailcore.tables.matchlist import AddressList, DomainList  # noqa: E402  (uses TableSet)

__all__ += ["AddressList", "DomainList"]
