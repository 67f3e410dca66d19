"""Tables without a file of their own: static, inline, environ, fail, unix, unionmap, pipemap.

Owns: the semantics of these types as in Postfix's DATABASE_README and the matching manual
pages (static returns its value for every key; inline holds ``{ key=value, ... }``; unionmap
joins every component's result with commas; pipemap feeds each result to the next table).
Must not: open other tables itself (unionmap/pipemap receive opened components).
Invariants: inline keys are folded to lower case at open time and at lookup, like every
fixed-key table.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Mapping, Sequence

from mailcore.errors import TableError
from mailcore.tables.base import Table, braced_name, split_braced, unbrace


class StaticTable:
    is_pattern = False

    def __init__(self, spec: str, name: str) -> None:
        self.spec = spec
        inner = unbrace(name)
        self.value = name if inner is None else inner

    async def get(self, key: str) -> str | None:
        return self.value


class InlineTable:
    is_pattern = False

    def __init__(self, spec: str, name: str) -> None:
        self.spec = spec
        self._entries: dict[str, str] = {}
        for item in split_braced(braced_name("inline", name)):
            inner = unbrace(item)
            text = item if inner is None else inner
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise TableError(f'{spec}: expected "key=value" or "{{ key = value }}" in "{item}"')
            self._entries.setdefault(key.strip().lower(), value.strip())

    async def get(self, key: str) -> str | None:
        return self._entries.get(key.lower())

    def items(self) -> list[tuple[str, str]]:
        return list(self._entries.items())


class EnvironTable:
    """environ: the process environment (as given to the TableSet); keys keep their case."""

    is_pattern = False

    def __init__(self, spec: str, environ: Mapping[str, str]) -> None:
        self.spec = spec
        self._environ = environ

    async def get(self, key: str) -> str | None:
        return self._environ.get(key)


class FailTable:
    """fail: every lookup fails, which callers report as a temporary error."""

    is_pattern = False

    def __init__(self, spec: str) -> None:
        self.spec = spec

    async def get(self, key: str) -> str | None:
        raise TableError(f"{self.spec}: table lookup failed (fail: table)")


class UnixTable:
    """unix:passwd.byname and unix:group.byname via the pwd and grp modules."""

    is_pattern = False

    def __init__(self, spec: str, name: str) -> None:
        if name not in ("passwd.byname", "group.byname"):
            raise TableError(f"unknown table: unix:{name}")
        self.spec = spec
        self.name = name

    async def get(self, key: str) -> str | None:
        try:
            if self.name == "passwd.byname":
                p = pwd.getpwnam(key)
                return ":".join(
                    [p.pw_name, p.pw_passwd, str(p.pw_uid), str(p.pw_gid), p.pw_gecos,
                     p.pw_dir, p.pw_shell]
                )
            g = grp.getgrnam(key)
            return ":".join([g.gr_name, g.gr_passwd, str(g.gr_gid), ",".join(g.gr_mem)])
        except KeyError:
            return None


class UnionTable:
    """unionmap:{a, b}: every component's result, joined with commas."""

    def __init__(self, spec: str, parts: Sequence[Table]) -> None:
        self.spec = spec
        self.parts = tuple(parts)
        self.is_pattern = any(p.is_pattern for p in parts)

    async def get(self, key: str) -> str | None:
        found = [v for v in [await p.get(key) for p in self.parts] if v is not None]
        return ",".join(found) if found else None


class PipeTable:
    """pipemap:{a, b}: the result of each table is the key for the next one."""

    def __init__(self, spec: str, parts: Sequence[Table]) -> None:
        self.spec = spec
        self.parts = tuple(parts)
        self.is_pattern = parts[0].is_pattern

    async def get(self, key: str) -> str | None:
        value: str | None = key
        for part in self.parts:
            value = await part.get(value)
            if value is None:
                return None
        return value
