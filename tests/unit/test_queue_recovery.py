"""Queue crash recovery and schema handling on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailcore.queue import (
    ACTIVE,
    CORRUPT,
    DEFERRED,
    INCOMING,
    SCHEMA_VERSION,
    NewMessage,
    NewRecipient,
    Queue,
    QueueSchemaError,
    queue_paths,
)


def make_msg(content: bytes, rcpts: tuple[str, ...] = ("bob@example.net",)) -> NewMessage:
    return NewMessage(
        sender="alice@example.com",
        recipients=tuple(NewRecipient(r) for r in rcpts),
        content_path=None,
        content=content,
        size=len(content),
        arrival_time=1_700_000_000.0,
        envid=None,
        ret=None,
        attrs={"helo": "client.example"},
    )


async def fill(directory: Path, count: int) -> list[str]:
    q = await Queue.open(directory)
    try:
        return [await q.enqueue(make_msg(b"message %d" % i, ("a@x", "b@y"))) for i in range(count)]
    finally:
        await q.close()


def tamper(directory: Path, *statements: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(queue_paths(directory).db)
    try:
        with conn:
            for sql, params in statements:
                conn.execute(sql, params)
    finally:
        conn.close()


async def test_active_returns_to_incoming(tmp_path: Path) -> None:
    directory = tmp_path / "q"
    ids = await fill(directory, 3)
    q = await Queue.open(directory)
    await q.set_state(ids[0], ACTIVE)
    await q.set_state(ids[1], ACTIVE)
    await q.set_state(ids[2], DEFERRED, next_attempt=1_700_000_900.0)
    await q.close()
    q = await Queue.open(directory)
    try:
        assert q.recovery is not None
        assert q.recovery.active_to_incoming == 2
        assert q.recovery.corrupted == 0
        states = {m.queue_id: m.state async for m in q.iter_messages()}
        assert states == {ids[0]: INCOMING, ids[1]: INCOMING, ids[2]: DEFERRED}
    finally:
        await q.close()


async def test_damaged_messages_go_to_corrupt(tmp_path: Path) -> None:
    directory = tmp_path / "q"
    ids = await fill(directory, 6)
    tamper(
        directory,
        ("UPDATE messages SET attrs = 'not json{' WHERE queue_id = ?", (ids[0],)),
        ("UPDATE messages SET state = 'bogus' WHERE queue_id = ?", (ids[1],)),
        ("DELETE FROM content WHERE queue_id = ?", (ids[2],)),
        ("DELETE FROM recipients WHERE queue_id = ? AND seq = 1", (ids[3],)),
        ("UPDATE messages SET attrs = '[1, 2]', state = 'active' WHERE queue_id = ?", (ids[4],)),
        ("INSERT INTO recipients (queue_id, seq, address) VALUES ('00000000000A', 0, 'x')", ()),
    )
    q = await Queue.open(directory)
    try:
        report = q.recovery
        assert report is not None
        assert report.corrupt_ids == tuple(ids[:5])
        assert report.active_to_incoming == 0  # the damaged active one went to corrupt instead
        assert report.orphans_removed == 1
        counts = await q.counts()
        assert (counts[CORRUPT], counts[INCOMING]) == (5, 1)
        healthy = await q.get(ids[5])
        assert healthy is not None and healthy.state == INCOMING
        listed = [m.queue_id async for m in q.iter_messages(CORRUPT)]
        assert listed == ids[:5]
    finally:
        await q.close()
    # Corrupt messages stay corrupt and are not reported again.
    q = await Queue.open(directory)
    try:
        assert q.recovery is not None and q.recovery.corrupted == 0
    finally:
        await q.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "q"
    await fill(directory, 1)
    tamper(directory, ("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,)))
    with pytest.raises(QueueSchemaError, match="newer"):
        await Queue.open(directory)


async def test_not_a_database_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "q"
    directory.mkdir()
    queue_paths(directory).db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(QueueSchemaError, match="not a usable"):
        await Queue.open(directory)


async def test_fresh_queue_report(tmp_path: Path) -> None:
    q = await Queue.open(tmp_path / "q")
    try:
        report = q.recovery
        assert report is not None
        assert (report.schema_version, report.migrated_from) == (SCHEMA_VERSION, None)
        assert (report.active_to_incoming, report.corrupted, report.orphans_removed) == (0, 0, 0)
        assert dict(await q.counts()) == dict.fromkeys(
            ("incoming", "active", "deferred", "hold", "corrupt"), 0
        )
    finally:
        await q.close()


async def test_migration_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailcore.queue import schema

    directory = tmp_path / "q"
    ids = await fill(directory, 2)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        schema.MIGRATIONS, SCHEMA_VERSION, ("ALTER TABLE messages ADD COLUMN extra TEXT",)
    )
    q = await Queue.open(directory)
    try:
        assert q.recovery is not None
        assert (q.recovery.migrated_from, q.recovery.schema_version) == (
            SCHEMA_VERSION,
            SCHEMA_VERSION + 1,
        )
        assert [m.queue_id async for m in q.iter_messages()] == ids
    finally:
        await q.close()
    conn = sqlite3.connect(queue_paths(directory).db)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
        assert "extra" in [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
    finally:
        conn.close()
