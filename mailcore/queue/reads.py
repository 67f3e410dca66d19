"""Read queries on the queue, turning rows into frozen records.

Must not: write. These run on a connection of their own, so a reader never sees a writer
batch that has not committed yet.

Invariants: every multi-statement read happens inside one read transaction (a consistent
snapshot); no read transaction is held while a caller processes the result, so WAL
checkpoints are never held back by a slow consumer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import aiosqlite

from mailcore.queue.types import STATES, QueuedMessage, QueuedRecipient

_MESSAGE_COLUMNS = (
    "queue_id, state, sender, size, content_size, arrival_time, create_time, envid, ret, attrs,"
    " next_attempt, last_attempt, attempt_count, warned_delay"
)
_RECIPIENT_COLUMNS = (
    "queue_id, seq, address, orig_rcpt, notify, orcpt, status, dsn_status, reason, relay,"
    " done, notified"
)


def _attrs(text: str) -> Mapping[str, str]:
    # Recovery moves messages with unparsable attributes to corrupt; tolerate them here so
    # that listing the corrupt queue still works.
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _recipient(row: tuple) -> QueuedRecipient:
    return QueuedRecipient(
        seq=row[1], address=row[2], orig_rcpt=row[3], notify=row[4], orcpt=row[5],
        status=row[6], dsn_status=row[7], reason=row[8], relay=row[9],
        done=bool(row[10]), notified=bool(row[11]),
    )  # fmt: skip


def _message(row: tuple, recipients: tuple[QueuedRecipient, ...]) -> QueuedMessage:
    return QueuedMessage(
        queue_id=row[0], state=row[1], sender=row[2], recipients=recipients,
        size=row[3], content_size=row[4], arrival_time=row[5], create_time=row[6],
        envid=row[7], ret=row[8], attrs=_attrs(row[9]), next_attempt=row[10],
        last_attempt=row[11], attempt_count=row[12], warned_delay=bool(row[13]),
    )  # fmt: skip


async def _in_snapshot(db: aiosqlite.Connection, statements: list[tuple[str, tuple]]) -> list:
    """Run read statements in one read transaction; returns each one's rows."""
    await db.execute("BEGIN")
    try:
        return [list(await db.execute_fetchall(sql, params)) for sql, params in statements]
    finally:
        await db.execute("COMMIT")


async def fetch_page(
    db: aiosqlite.Connection, state: str | None, after: str, limit: int
) -> list[QueuedMessage]:
    """Up to ``limit`` messages with queue_id > ``after``, in queue_id order."""
    where = "queue_id > ?" if state is None else "state = ? AND queue_id > ?"
    params: tuple = (after,) if state is None else (state, after)
    return await _page(db, where, params, limit)


async def _page(
    db: aiosqlite.Connection, where: str, params: tuple, limit: int
) -> list[QueuedMessage]:
    subquery = f"SELECT queue_id FROM messages WHERE {where} ORDER BY queue_id LIMIT {int(limit)}"
    messages, recipients = await _in_snapshot(
        db,
        [
            (f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id IN ({subquery})"
             " ORDER BY queue_id", params),
            (f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE queue_id IN ({subquery})"
             " ORDER BY queue_id, seq", params),
        ],
    )  # fmt: skip
    by_id: dict[str, list[QueuedRecipient]] = {}
    for row in recipients:
        by_id.setdefault(row[0], []).append(_recipient(row))
    return [_message(row, tuple(by_id.get(row[0], ()))) for row in messages]


async def fetch_message(db: aiosqlite.Connection, queue_id: str) -> QueuedMessage | None:
    messages, recipients = await _in_snapshot(
        db,
        [
            (f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)),
            (f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE queue_id = ? ORDER BY seq",
             (queue_id,)),
        ],
    )  # fmt: skip
    if not messages:
        return None
    return _message(messages[0], tuple(_recipient(row) for row in recipients))


async def fetch_counts(db: aiosqlite.Connection) -> dict[str, int]:
    rows = await db.execute_fetchall("SELECT state, count(*) FROM messages GROUP BY state")
    counts = dict.fromkeys(STATES, 0)
    for state, count in rows:
        counts[state] = count
    return counts


async def fetch_chunk_count(db: aiosqlite.Connection, queue_id: str) -> int | None:
    rows = list(
        await db.execute_fetchall(
            "SELECT content_chunks FROM messages WHERE queue_id = ?", (queue_id,)
        )
    )
    return rows[0][0] if rows else None


async def fetch_chunk(db: aiosqlite.Connection, queue_id: str, seq: int) -> bytes | None:
    rows = list(
        await db.execute_fetchall(
            "SELECT data FROM content WHERE queue_id = ? AND seq = ?", (queue_id, seq)
        )
    )
    return bytes(rows[0][0]) if rows else None


async def fetch_due_page(
    db: aiosqlite.Connection, state: str, now: float, after: str, limit: int
) -> list[QueuedMessage]:
    """Up to ``limit`` messages in ``state`` whose next_attempt is unset or not after ``now``,
    with queue_id > ``after``, in queue_id order.

    Walking the state index in queue_id order makes one pass over a large deferred queue
    linear in its size (like Postfix's directory scan), and rows re-deferred during the pass
    drop out by their new next_attempt."""
    where = "state = ? AND queue_id > ? AND ifnull(next_attempt, 0) <= ?"
    return await _page(db, where, (state, after, now), limit)
