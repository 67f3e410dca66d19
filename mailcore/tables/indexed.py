"""Key/value tables built from a Postfix ``key value`` source file: texthash and the indexed types.

Owns: the source syntax (``key whitespace value``, comments, continuation lines, case folding,
duplicate handling), the one on-disk index format behind hash/btree/lmdb/cdb (an SQLite file
named source + Postfix's suffix with a ``mailcore_map(key, value)`` table), building and
editing that index, and the tables that read it.
Must not: know which parameter uses a table.
Invariants: a build replaces the index atomically (write a temporary file, then rename), so a
running server never sees a half-built index; a reader notices a replaced or edited file on its
next lookup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from mailcore.errors import TableError
from mailcore.tables.base import (
    FileWatch,
    Warn,
    log_warning,
    logical_lines,
    parse_key_value,
)

INDEX_SUFFIX: dict[str, str] = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}
FORMAT_VERSION = "1"

_SCHEMA = (
    "CREATE TABLE mailcore_map (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE mailcore_meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
)


def index_path(kind: str, source: Path) -> Path:
    """The index file Postfix would use for ``kind:source``."""
    return source.with_name(source.name + INDEX_SUFFIX[kind])


def parse_map_source(
    text: str,
    filename: str,
    *,
    fold: bool = True,
    replace: bool = False,
    warn: Warn = log_warning,
) -> dict[str, str]:
    """Parse postmap source text into an ordered key->value dict.

    A duplicate key warns and keeps the first value (``replace`` keeps the last, as postmap -r).
    """
    entries: dict[str, str] = {}
    for number, line in logical_lines(text):
        pair = parse_key_value(line)
        if pair is None:
            warn(f"{filename}, line {number}: expected format: key whitespace value")
            continue
        key, value = pair
        if fold:
            key = key.lower()
        if key in entries:
            warn(f'{filename}, line {number}: duplicate entry: "{key}"')
            if not replace:
                continue
        entries[key] = value
    return entries


def build_index(kind: str, path: Path, entries: Iterable[tuple[str, str]]) -> None:
    """Write a new index at ``path`` atomically from (key, value) pairs."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO mailcore_meta VALUES (?, ?)",
                    [("format", FORMAT_VERSION), ("type", kind)],
                )
                conn.executemany("INSERT OR REPLACE INTO mailcore_map VALUES (?, ?)", entries)
        finally:
            conn.close()
        os.replace(tmp, path)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TableError(f"cannot write database {path}: {exc}") from exc


def _open_rw(path: Path, *, create: bool, kind: str) -> sqlite3.Connection:
    if not path.exists():
        if not create:
            raise TableError(f"open database {path}: No such file or directory")
        build_index(kind, path, [])
    try:
        conn = sqlite3.connect(path)
        conn.execute("SELECT 1 FROM mailcore_map LIMIT 1")
    except sqlite3.Error as exc:
        raise TableError(f"open database {path}: not a mailcore table index ({exc})") from exc
    return conn


def add_entries(
    kind: str,
    path: Path,
    entries: Iterable[tuple[int, str, str]],
    *,
    source_name: str,
    replace: bool,
    warn: Warn,
) -> None:
    """Add (line, key, value) entries to an index in place (postmap -i)."""
    conn = _open_rw(path, create=True, kind=kind)
    try:
        with conn:
            for number, key, value in entries:
                exists = conn.execute(
                    "SELECT 1 FROM mailcore_map WHERE key = ?", (key,)
                ).fetchone()
                if exists:
                    warn(f'{source_name}, line {number}: duplicate entry: "{key}"')
                    if not replace:
                        continue
                conn.execute("INSERT OR REPLACE INTO mailcore_map VALUES (?, ?)", (key, value))
    except sqlite3.Error as exc:
        raise TableError(f"update database {path}: {exc}") from exc
    finally:
        conn.close()


def delete_key(kind: str, path: Path, key: str) -> bool:
    """Delete one key in place (postmap -d); True when it was present."""
    conn = _open_rw(path, create=False, kind=kind)
    try:
        with conn:
            cur = conn.execute("DELETE FROM mailcore_map WHERE key = ?", (key,))
            return cur.rowcount > 0
    except sqlite3.Error as exc:
        raise TableError(f"update database {path}: {exc}") from exc
    finally:
        conn.close()


class IndexedTable:
    """hash/btree/lmdb/cdb: lookups in the SQLite index built by ``mailcore map``.

    Lookups use the stdlib sqlite3 module synchronously inside the event loop: a primary-key
    read of a local file takes well under a millisecond, cheaper than a thread hop.
    """

    is_pattern = False

    def __init__(
        self, spec: str, kind: str, source: Path, *, fold: bool = True, warn: Warn = log_warning
    ) -> None:
        self.spec = spec
        self.kind = kind
        self.path = index_path(kind, source)
        self.fold = fold
        self._watch = FileWatch(self.path)
        self._conn: sqlite3.Connection | None = None
        self._reopen()
        with contextlib.suppress(OSError):
            if source.stat().st_mtime > self.path.stat().st_mtime:
                warn(f"database {self.path} is older than source file {source}")

    def _reopen(self) -> None:
        try:
            new = self._watch.changed()
        except TableError as exc:
            raise TableError(f"open database {exc.message.removeprefix('open ')}") from exc
        if new is None and self._conn is not None:
            return
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            conn.execute("SELECT 1 FROM mailcore_map LIMIT 1")
        except sqlite3.Error as exc:
            raise TableError(f"open database {self.path}: not a mailcore table index") from exc
        self._conn = conn
        if new is not None:
            self._watch.mark(new)

    def lookup(self, key: str) -> str | None:
        self._reopen()
        assert self._conn is not None
        if self.fold:
            key = key.lower()
        try:
            row = self._conn.execute(
                "SELECT value FROM mailcore_map WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise TableError(f"{self.spec}: lookup failed: {exc}") from exc
        return None if row is None else str(row[0])

    async def get(self, key: str) -> str | None:
        return self.lookup(key)

    def items(self) -> list[tuple[str, str]]:
        self._reopen()
        assert self._conn is not None
        try:
            rows = self._conn.execute("SELECT key, value FROM mailcore_map").fetchall()
        except sqlite3.Error as exc:
            raise TableError(f"{self.spec}: read failed: {exc}") from exc
        return [(str(k), str(v)) for k, v in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class TextHashTable:
    """texthash: the source file parsed into memory, parsed again when it changes."""

    is_pattern = False

    def __init__(
        self, spec: str, source: Path, *, fold: bool = True, warn: Warn = log_warning
    ) -> None:
        self.spec = spec
        self.path = source
        self.fold = fold
        self._warn = warn
        self._watch = FileWatch(source)
        self._entries: dict[str, str] = {}
        self._reload()

    def _reload(self) -> None:
        entries = self._watch.reload(lambda text: parse_map_source(
            text, str(self.path), fold=self.fold, warn=self._warn))
        if entries is not None:
            self._entries = entries

    async def get(self, key: str) -> str | None:
        self._reload()
        return self._entries.get(key.lower() if self.fold else key)

    def items(self) -> list[tuple[str, str]]:
        self._reload()
        return list(self._entries.items())
