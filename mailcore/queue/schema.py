"""The queue database: its schema, migrations, connection settings and crash recovery.

Must not: decide when anything runs; ``Queue`` calls these from its writer (writes) or its
reader connection (reads).

Invariants: the schema version lives in ``schema_version``; migrations are applied in order
inside one transaction; recovery leaves every message either consistent (state known, JSON
attributes an object, recipients and content chunks all present) or in the corrupt state.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import aiosqlite

from mailcore.queue.types import ACTIVE, CORRUPT, INCOMING, STATES, QueueSchemaError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000

_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE messages (
        queue_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        arrival_time REAL NOT NULL,
        create_time REAL NOT NULL,
        sender TEXT NOT NULL,
        size INTEGER NOT NULL,
        nrcpt INTEGER NOT NULL,
        envid TEXT,
        ret TEXT,
        attrs TEXT NOT NULL DEFAULT '{}',
        next_attempt REAL,
        last_attempt REAL,
        attempt_count INTEGER NOT NULL DEFAULT 0,
        warned_delay INTEGER NOT NULL DEFAULT 0,
        content_chunks INTEGER NOT NULL,
        content_size INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX messages_by_state ON messages (state, queue_id)",
    """CREATE TABLE recipients (
        queue_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        address TEXT NOT NULL,
        orig_rcpt TEXT,
        notify TEXT,
        orcpt TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        dsn_status TEXT,
        reason TEXT,
        relay TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        notified INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (queue_id, seq)
    ) WITHOUT ROWID""",
    # Chunks are large blobs, so this stays a rowid table (WITHOUT ROWID suits small rows).
    """CREATE TABLE content (
        queue_id TEXT NOT NULL,
        seq INTEGER NOT NULL CHECK (seq >= 0),
        data BLOB NOT NULL,
        PRIMARY KEY (queue_id, seq)
    )""",
)

# MIGRATIONS[n] brings a version-n database to version n+1. Version 1 is the first schema, so
# there is nothing here yet; a later schema appends its statements and bumps SCHEMA_VERSION.
MIGRATIONS: dict[int, tuple[str, ...]] = {}


def create_db_file(path: Path) -> None:
    """Create an empty database file readable by its owner only (SQLite would use the umask);
    SQLite gives the -wal and -shm files the same permissions."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


async def connect(path: Path) -> aiosqlite.Connection:
    """Open the queue with the settings every mailcore connection uses."""
    db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        mode = await _fetch_one(db, "PRAGMA journal_mode=WAL")
        if str(mode[0]).lower() != "wal":
            raise QueueSchemaError(f"{path}: cannot switch the queue database to WAL mode")
        # FULL makes every COMMIT durable before it returns: the reply to DATA depends on it.
        await db.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        await db.close()
        raise QueueSchemaError(f"{path}: not a usable SQLite queue database: {exc}") from exc
    except BaseException:
        await db.close()
        raise
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only synchronous connection for command-line tools (mailq, queue listing).

    WAL mode lets it read a consistent snapshot while the server keeps writing."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    return conn


async def _fetch_one(db: aiosqlite.Connection, sql: str, params: tuple = ()) -> tuple:
    rows = list(await db.execute_fetchall(sql, params))
    return tuple(rows[0]) if rows else ()


async def current_version(db: aiosqlite.Connection) -> int:
    """0 for an empty database, else the stored schema version."""
    row = await _fetch_one(
        db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'"
    )
    if row[0] == 0:
        return 0
    row = await _fetch_one(db, "SELECT max(version) FROM schema_version")
    return int(row[0] or 0)


async def ensure_schema(db: aiosqlite.Connection, path: Path) -> int | None:
    """Create or migrate the schema inside the caller's transaction.

    Returns the version migrated from, or None when nothing was migrated."""
    version = await current_version(db)
    if version > SCHEMA_VERSION:
        raise QueueSchemaError(
            f"{path}: queue schema version {version} is newer than this mailcore "
            f"understands ({SCHEMA_VERSION})"
        )
    if version == 0:
        for statement in _V1:
            await db.execute(statement)
        await db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        return None
    if version == SCHEMA_VERSION:
        return None
    for step in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[step]:
            await db.execute(statement)
    await db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return version


_STATE_LIST = ", ".join(f"'{state}'" for state in STATES)

# A message is damaged when anything the delivery path relies on is missing or unreadable.
# CASE keeps json_type away from text that is not JSON (it would raise).
_DAMAGED = f"""
    state NOT IN ({_STATE_LIST})
    OR CASE WHEN json_valid(attrs) THEN json_type(attrs) != 'object' ELSE 1 END
    OR nrcpt < 1
    OR nrcpt != (SELECT count(*) FROM recipients r WHERE r.queue_id = messages.queue_id)
    OR content_chunks != (SELECT count(*) FROM content c WHERE c.queue_id = messages.queue_id)
    OR content_chunks != (SELECT coalesce(max(seq) + 1, 0) FROM content c
                          WHERE c.queue_id = messages.queue_id)
    OR content_size != (SELECT coalesce(sum(length(data)), 0) FROM content c
                        WHERE c.queue_id = messages.queue_id)
"""


async def find_damaged(db: aiosqlite.Connection) -> list[str]:
    rows = await db.execute_fetchall(
        f"SELECT queue_id FROM messages WHERE state != '{CORRUPT}' AND ({_DAMAGED})"
        " ORDER BY queue_id"
    )
    return [row[0] for row in rows]


async def repair(db: aiosqlite.Connection, damaged: list[str]) -> tuple[int, int]:
    """Move damaged messages to corrupt, active ones back to incoming, drop orphan rows.

    Runs inside the caller's transaction. Returns (active_to_incoming, orphans_removed)."""
    for queue_id in damaged:
        await db.execute("UPDATE messages SET state = ? WHERE queue_id = ?", (CORRUPT, queue_id))
    cursor = await db.execute("UPDATE messages SET state = ? WHERE state = ?", (INCOMING, ACTIVE))
    reactivated = cursor.rowcount
    orphans = 0
    for table in ("recipients", "content"):
        cursor = await db.execute(
            f"DELETE FROM {table} WHERE queue_id NOT IN (SELECT queue_id FROM messages)"
        )
        orphans += cursor.rowcount
    return reactivated, orphans
