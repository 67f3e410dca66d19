"""The queue's write operations, each a coroutine run by the writer inside a transaction.

Must not: begin, commit or roll back — the writer owns transaction boundaries, so an operation
that raises leaves nothing behind once the writer rolls back its savepoint.

Invariants: message content is read from its spooled file one chunk at a time on the
database thread (sqlite3's executemany pulls rows from a generator lazily), so a large message
is never held in memory, and the event loop never blocks on the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mailcore.queue import schema
from mailcore.queue.types import STATES, NewMessage, QueueWriteError, RecoveryReport

CHUNK_SIZE = 256 * 1024
_ID_TRIES = 16


@dataclass
class _Tally:
    """Chunk count and byte total, filled in by the chunk generator as it runs."""

    chunks: int = 0
    size: int = 0


def _file_chunks(queue_id: str, path: Path, tally: _Tally) -> Iterator[tuple[str, int, bytes]]:
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_SIZE):
            yield (queue_id, tally.chunks, chunk)
            tally.chunks += 1
            tally.size += len(chunk)


def _bytes_chunks(queue_id: str, data: bytes, tally: _Tally) -> Iterator[tuple[str, int, bytes]]:
    view = memoryview(data)
    for start in range(0, len(data), CHUNK_SIZE):
        chunk = bytes(view[start : start + CHUNK_SIZE])
        yield (queue_id, tally.chunks, chunk)
        tally.chunks += 1
        tally.size += len(chunk)


async def _id_in_use(db: aiosqlite.Connection, queue_id: str) -> bool:
    rows = await db.execute_fetchall("SELECT 1 FROM messages WHERE queue_id = ?", (queue_id,))
    return bool(list(rows))


async def _choose_id(db: aiosqlite.Connection, msg: NewMessage, allocate: Callable[[], str]) -> str:
    if msg.queue_id is not None:
        # A pre-allocated ID may already be in a Received: header, so it cannot change.
        if await _id_in_use(db, msg.queue_id):
            raise QueueWriteError(f"{msg.queue_id}: queue ID already in use")
        return msg.queue_id
    for _ in range(_ID_TRIES):
        queue_id = allocate()
        if not await _id_in_use(db, queue_id):
            return queue_id
    raise QueueWriteError("no free queue ID after repeated tries")


async def insert_message(
    db: aiosqlite.Connection, msg: NewMessage, allocate: Callable[[], str], now: float
) -> str:
    queue_id = await _choose_id(db, msg, allocate)
    tally = _Tally()
    chunks = (
        _file_chunks(queue_id, msg.content_path, tally)
        if msg.content_path is not None
        else _bytes_chunks(queue_id, msg.content or b"", tally)
    )
    try:
        await db.executemany("INSERT INTO content (queue_id, seq, data) VALUES (?, ?, ?)", chunks)
    finally:
        chunks.close()  # closes the spool file now, also when the insert failed
    await db.execute(
        "INSERT INTO messages (queue_id, state, arrival_time, create_time, sender, size, nrcpt,"
        " envid, ret, attrs, content_chunks, content_size)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            queue_id, msg.state, msg.arrival_time, now, msg.sender, msg.size,
            len(msg.recipients), msg.envid, msg.ret, json.dumps(dict(msg.attrs)),
            tally.chunks, tally.size,
        ),
    )  # fmt: skip
    await db.executemany(
        "INSERT INTO recipients (queue_id, seq, address, orig_rcpt, notify, orcpt)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (queue_id, seq, r.address, r.orig_rcpt, r.notify, r.orcpt)
            for seq, r in enumerate(msg.recipients)
        ],
    )
    return queue_id


async def update_state(
    db: aiosqlite.Connection, queue_id: str, state: str, next_attempt: float | None
) -> None:
    if state not in STATES:
        raise ValueError(f"unknown queue state {state!r}")
    cursor = await db.execute(
        "UPDATE messages SET state = ?, next_attempt = coalesce(?, next_attempt)"
        " WHERE queue_id = ?",
        (state, next_attempt, queue_id),
    )
    if cursor.rowcount == 0:
        raise KeyError(queue_id)


async def delete_message(db: aiosqlite.Connection, queue_id: str) -> bool:
    await db.execute("DELETE FROM content WHERE queue_id = ?", (queue_id,))
    await db.execute("DELETE FROM recipients WHERE queue_id = ?", (queue_id,))
    cursor = await db.execute("DELETE FROM messages WHERE queue_id = ?", (queue_id,))
    return cursor.rowcount > 0


async def recover(db: aiosqlite.Connection, path: Path) -> RecoveryReport:
    migrated_from = await schema.ensure_schema(db, path)
    damaged = await schema.find_damaged(db)
    reactivated, orphans = await schema.repair(db, damaged)
    return RecoveryReport(
        schema_version=schema.SCHEMA_VERSION,
        migrated_from=migrated_from,
        active_to_incoming=reactivated,
        corrupt_ids=tuple(damaged),
        orphans_removed=orphans,
    )
