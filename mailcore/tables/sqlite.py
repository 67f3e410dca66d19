"""sqlite: tables configured by a sqlite_table(5) parameter file.

Owns: reading the ``name = value`` parameter file (dbpath, query, result_format, domain,
expansion_limit and the legacy table/select_field/where_field/additional_conditions), the
``%s %u %d %[1-9] %%`` query expansion (and ``%S %U %D`` in result_format) with SQL quoting,
and running the query off the event loop.
Must not: write to the database, or block the loop (queries run in a worker thread).
Invariants: a suppressed query (``%d`` with no domain, a key outside ``domain``) returns "not
found" without touching the database; more results than expansion_limit is a lookup error.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailcore.errors import TableError
from mailcore.tables.base import logical_lines, read_text

_KNOWN = {
    "dbpath", "query", "result_format", "domain", "expansion_limit",
    "table", "select_field", "where_field", "additional_conditions",
}


def parse_cf(text: str, filename: str) -> dict[str, str]:
    """Parse a Postfix database parameter file (``name = value`` lines)."""
    params: dict[str, str] = {}
    for number, line in logical_lines(text):
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise TableError('expected "name = value"', file=filename, line=number)
        if name not in _KNOWN:
            raise TableError(f'unknown sqlite parameter "{name}"', file=filename, line=number)
        params[name] = value.strip()
    return params


def sql_quote(text: str) -> str:
    """Quote for use inside a single-quoted SQL string literal (sqlite %q)."""
    return text.replace("'", "''")


def expand(fmt: str, value: str, key: str | None, quote: Callable[[str], str]) -> str | None:
    """Expand a query or result_format template; None when the template suppresses it.

    ``value`` feeds %s/%u/%d/%1..%9; ``key`` (result_format only) feeds %S/%U/%D.
    """
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise TableError(f'invalid "%" at end of "{fmt}"')
        n = fmt[i + 1]
        i += 2
        if n == "%":
            out.append("%")
            continue
        source = value
        if n in "SUD":
            if key is None:
                raise TableError(f'"%{n}" is allowed only in result_format')
            source, n = key, n.lower()
        user, at, domain = source.rpartition("@")
        if n == "s":
            out.append(quote(source))
        elif n == "u":
            if at and not user:
                return None
            out.append(quote(user if at else source))
        elif n == "d":
            if not at or not domain:
                return None
            out.append(quote(domain))
        elif n in "123456789":
            labels = domain.split(".") if at and domain else []
            if int(n) > len(labels):
                return None
            out.append(quote(labels[-int(n)]))
        else:
            raise TableError(f'invalid "%{n}" in "{fmt}"')
    return "".join(out)


class SqliteTable:
    """sqlite:/file.cf tables; each lookup runs one query in a worker thread."""

    is_pattern = False

    def __init__(
        self,
        spec: str,
        cf_path: Path,
        *,
        domain_list: Callable[[str], Callable[[str], Awaitable[bool]]] | None = None,
    ) -> None:
        """``domain_list`` turns the ``domain`` parameter into a domain matcher."""
        self.spec = spec
        params = parse_cf(read_text(cf_path), str(cf_path))
        if "dbpath" not in params:
            raise TableError('missing "dbpath" parameter', file=str(cf_path))
        self.dbpath = Path(params["dbpath"])
        self.query = params.get("query") or self._legacy_query(params, str(cf_path))
        self.result_format = params.get("result_format", "%s")
        try:
            self.expansion_limit = int(params.get("expansion_limit", "0"))
        except ValueError as exc:
            raise TableError("expansion_limit must be a number", file=str(cf_path)) from exc
        domain = params.get("domain", "").strip()
        self.domain_match: Callable[[str], Awaitable[bool]] | None = None
        if domain:
            if domain_list is None:
                raise TableError('"domain" needs a domain list opener', file=str(cf_path))
            self.domain_match = domain_list(domain)

    @staticmethod
    def _legacy_query(params: dict[str, str], filename: str) -> str:
        missing = [p for p in ("table", "select_field", "where_field") if p not in params]
        if missing:
            raise TableError(f'missing "query" parameter (or {", ".join(missing)})', file=filename)
        extra = params.get("additional_conditions", "")
        return (
            f"SELECT {params['select_field']} FROM {params['table']}"
            f" WHERE {params['where_field']} = '%s' {extra}"
        ).strip()

    def _run(self, sql: str) -> list[object]:
        try:
            conn = sqlite3.connect(f"{self.dbpath.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise TableError(f"{self.spec}: open database {self.dbpath}: {exc}") from exc
        try:
            return [row[0] for row in conn.execute(sql).fetchall() if row]
        except sqlite3.Error as exc:
            raise TableError(f"{self.spec}: query failed: {exc}") from exc
        finally:
            conn.close()

    async def get(self, key: str) -> str | None:
        key = key.lower()
        if self.domain_match is not None:
            user, at, domain = key.rpartition("@")
            if not at or not user or not domain or not await self.domain_match(domain):
                return None
        sql = expand(self.query, key, None, sql_quote)
        if sql is None:
            return None
        rows = await asyncio.to_thread(self._run, sql)
        results: list[str] = []
        for row in rows:
            if row is None:
                continue
            text = expand(self.result_format, str(row), key, lambda s: s)
            if text is not None and text != "":
                results.append(text)
        if self.expansion_limit and len(results) > self.expansion_limit:
            raise TableError(
                f"{self.spec}: {key}: expansion limit {self.expansion_limit} exceeded"
            )
        return ",".join(results) if results else None
