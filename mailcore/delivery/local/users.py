"""Who a local recipient is: passwd entries from tables (Postfix's mypwnam).

Owns: ``User``, parsing a passwd(5) line, and ``TableUsers``, which asks the tables of
local_recipient_maps (by default ``proxy:unix:passwd.byname``) and accepts only results in
passwd form, so an alias entry in the same list is never mistaken for an account. A
``texthash:`` file of passwd lines therefore defines test or virtual-like local accounts
without touching /etc/passwd.

Must not: create accounts or trust a result that is not a complete passwd line.
Invariants: a User has a non-empty name without "/", numeric uid/gid >= 0 and an absolute home.
"""

from __future__ import annotations

import asyncio
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mailcore.tables import Table


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = ""


class UserDb(Protocol):
    async def by_name(self, name: str) -> User | None: ...

    async def by_uid(self, uid: int) -> User | None: ...


def parse_passwd(value: str) -> User | None:
    """``name:passwd:uid:gid:gecos:home:shell`` → User, or None when it is not one."""
    fields = value.strip().split(":")
    if len(fields) != 7:
        return None
    name, _, uid, gid, _, home, shell = fields
    if not name or "/" in name or not uid.isdigit() or not gid.isdigit():
        return None
    if not home.startswith("/"):
        return None
    return User(name, int(uid), int(gid), home, shell)


class TableUsers:
    """Accounts from lookup tables whose results are passwd lines (unix:passwd.byname is)."""

    def __init__(self, tables: Sequence[Table]) -> None:
        self._tables = tuple(tables)

    async def by_name(self, name: str) -> User | None:
        for table in self._tables:
            value = await table.get(name)
            user = parse_passwd(value) if value is not None else None
            if user is not None:
                return user
        return None

    async def by_uid(self, uid: int) -> User | None:
        def lookup() -> User | None:
            try:
                p = pwd.getpwuid(uid)
            except KeyError:
                return None
            return User(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell)

        return await asyncio.get_running_loop().run_in_executor(None, lookup)
