"""The queue's write operations, each a coroutine run by the writer inside a transaction.

Must not: begin, commit or roll back — the writer owns transaction boundaries, so an operation
that raises leaves nothing behind once the writer rolls back its savepoint.

Invariants: message content is read from its spooled file one chunk at a time on the
database thread (sqlite3's executemany pulls rows from a generator lazily), so a large message
is never held in memory, and the event loop never blocks on the file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mailcore.model import RecipientResult
from mailcore.queue import schema
from mailcore.queue.types import (
    RECIPIENT_STATUSES,
    STATES,
    NewMessage,
    QueueWriteError,
    RecoveryReport,
)

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


_INSERT_MESSAGE = (
    "INSERT INTO messages (queue_id, state, arrival_time, create_time, sender, size, nrcpt,"
    " envid, ret, attrs, content_chunks, content_size)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_CONTENT = "INSERT INTO content (queue_id, seq, data) VALUES (?, ?, ?)"


def _message_row(queue_id: str, msg: NewMessage, now: float,
                 tally: _Tally) -> tuple[object, ...]:
    return (
        queue_id, msg.state, msg.arrival_time, now, msg.sender, msg.size,
        len(msg.recipients), msg.envid, msg.ret, json.dumps(dict(msg.attrs)),
        tally.chunks, tally.size,
    )  # fmt: skip


def _is_duplicate_key(exc: sqlite3.IntegrityError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY


async def _insert_message_row(db: aiosqlite.Connection, msg: NewMessage,
                              allocate: Callable[[], str], now: float, tally: _Tally) -> str:
    """The message row first, its primary key standing in for the separate "is this ID in
    use" query: a failing first statement leaves nothing of the operation behind."""
    tries = 1 if msg.queue_id is not None else _ID_TRIES
    for _ in range(tries):
        queue_id = msg.queue_id if msg.queue_id is not None else allocate()
        try:
            await db.execute(_INSERT_MESSAGE, _message_row(queue_id, msg, now, tally))
        except sqlite3.IntegrityError as exc:
            if not _is_duplicate_key(exc):
                raise
            continue
        return queue_id
    if msg.queue_id is not None:
        # A pre-allocated ID may already be in a Received: header, so it cannot change.
        raise QueueWriteError(f"{msg.queue_id}: queue ID already in use")
    raise QueueWriteError("no free queue ID after repeated tries")


async def insert_message(
    db: aiosqlite.Connection, msg: NewMessage, allocate: Callable[[], str], now: float
) -> str:
    if msg.content is not None:
        # Content in memory: its chunk count and size are known before it is stored, so
        # the message row goes first and no separate ID query is needed.
        content = msg.content
        tally = _Tally(-(-len(content) // CHUNK_SIZE), len(content))
        queue_id = await _insert_message_row(db, msg, allocate, now, tally)
        if len(content) > CHUNK_SIZE:
            await db.executemany(_INSERT_CONTENT, _bytes_chunks(queue_id, content, _Tally()))
        elif content:  # empty content has no chunk at all
            await db.execute(_INSERT_CONTENT, (queue_id, 0, content))
    else:
        queue_id = await _insert_spooled(db, msg, allocate, now)
    await db.executemany(
        "INSERT INTO recipients (queue_id, seq, address, orig_rcpt, notify, orcpt)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (queue_id, seq, r.address, r.orig_rcpt, r.notify, r.orcpt)
            for seq, r in enumerate(msg.recipients)
        ],
    )
    return queue_id


async def _insert_spooled(db: aiosqlite.Connection, msg: NewMessage,
                          allocate: Callable[[], str], now: float) -> str:
    """Content from a spool file: stored first, because only reading it tells its size."""
    assert msg.content_path is not None
    queue_id = await _choose_id(db, msg, allocate)
    tally = _Tally()
    chunks = _file_chunks(queue_id, msg.content_path, tally)
    try:
        await db.executemany(_INSERT_CONTENT, chunks)
    finally:
        chunks.close()  # closes the spool file now, also when the insert failed
    await db.execute(_INSERT_MESSAGE, _message_row(queue_id, msg, now, tally))
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


@dataclass(frozen=True)
class MessageUpdate:
    """Message-row fields that ``record_results`` changes; None leaves a field as it is."""

    state: str | None = None
    next_attempt: float | None = None
    last_attempt: float | None = None
    attempt_count: int | None = None
    warned_delay: bool | None = None


_DONE_STATUSES = ("sent", "bounced")


async def record_results(
    db: aiosqlite.Connection,
    queue_id: str,
    results: Iterable[RecipientResult],
    update: MessageUpdate,
    notified: Iterable[int],
) -> None:
    """Recipient outcomes, notice flags and message fields of one message, all or nothing."""
    if update.state is not None and update.state not in STATES:
        raise ValueError(f"unknown queue state {update.state!r}")
    cursor = await db.execute(
        "UPDATE messages SET state = coalesce(?, state),"
        " next_attempt = coalesce(?, next_attempt), last_attempt = coalesce(?, last_attempt),"
        " attempt_count = coalesce(?, attempt_count), warned_delay = coalesce(?, warned_delay)"
        " WHERE queue_id = ?",
        (
            update.state, update.next_attempt, update.last_attempt, update.attempt_count,
            None if update.warned_delay is None else int(update.warned_delay), queue_id,
        ),
    )  # fmt: skip
    if cursor.rowcount == 0:
        raise KeyError(queue_id)
    rows = []
    for result in results:
        if result.status not in RECIPIENT_STATUSES or result.status == "pending":
            raise ValueError(f"{queue_id}: bad recipient status {result.status!r}")
        done = int(result.status in _DONE_STATUSES)
        rows.append(
            (result.status, result.dsn, result.reason, result.relay, done, queue_id, result.seq)
        )
    for row in rows:
        cursor = await db.execute(
            "UPDATE recipients SET status = ?, dsn_status = ?, reason = ?, relay = ?, done = ?"
            " WHERE queue_id = ? AND seq = ?",
            row,
        )
        if cursor.rowcount == 0:
            raise KeyError(f"{queue_id}: no recipient {row[-1]}")
    await db.executemany(
        "UPDATE recipients SET notified = 1 WHERE queue_id = ? AND seq = ?",
        [(queue_id, seq) for seq in notified],
    )


async def transition(
    db: aiosqlite.Connection, queue_id: str, from_state: str, to_state: str,
    next_attempt: float | None,
) -> bool:
    """Move a message only if it is still in ``from_state`` (it may have been held, deleted
    or moved since it was read); False when it was not."""
    if to_state not in STATES or from_state not in STATES:
        raise ValueError(f"unknown queue state {from_state!r} or {to_state!r}")
    cursor = await db.execute(
        "UPDATE messages SET state = ?, next_attempt = coalesce(?, next_attempt)"
        " WHERE queue_id = ? AND state = ?",
        (to_state, next_attempt, queue_id, from_state),
    )
    return cursor.rowcount > 0
