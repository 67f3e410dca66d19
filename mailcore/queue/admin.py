"""Administrative queue changes (Postfix's postsuper -d/-h/-H/-r) as queue operations.

Owns: which queues each action looks in by default and which it may be pointed at, what
each action does to a message row, the write operations that do it for a batch of queue IDs
(run by the one writer, each batch one transaction), the reads that page through queue IDs,
and ``administer_offline``, the driver the command-line tools use when no server runs.

Must not: know about the scheduler. With the server running, the queue manager calls
``Queue.administer`` itself, after it has stopped any delivery of the message in question
(see QueueManager.delete); this module never decides whether a message is being delivered.

Invariants: every change is conditional on the message being in one of the given states at
the moment of the write (compare-and-set), so a message that moved meanwhile is left alone
and reported missing; a deleted message loses its recipients and content in the same
transaction; a requeued message keeps its queue ID, goes to incoming with no next attempt
time, a fresh create_time (the queue lifetime starts again, as Postfix's new queue file
does), and its pending recipients lose their last deferral status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

from mailcore.queue.types import ACTIVE, CORRUPT, DEFERRED, HOLD, INCOMING, STATES

if TYPE_CHECKING:
    from mailcore.queue.core import Queue

DELETE = "delete"
HOLD_ACTION = "hold"
RELEASE = "release"
REQUEUE = "requeue"
ACTIONS: tuple[str, ...] = (DELETE, HOLD_ACTION, RELEASE, REQUEUE)
ALL = "ALL"
BATCH = 500

# postsuper's defaults: -d and -r look in hold, incoming, active and deferred; -h in
# incoming, active and deferred; -H only in hold.
DEFAULT_QUEUES: dict[str, frozenset[str]] = {
    DELETE: frozenset((HOLD, INCOMING, ACTIVE, DEFERRED)),
    HOLD_ACTION: frozenset((INCOMING, ACTIVE, DEFERRED)),
    RELEASE: frozenset((HOLD,)),
    REQUEUE: frozenset((HOLD, INCOMING, ACTIVE, DEFERRED)),
}
TARGET: dict[str, str | None] = {
    DELETE: None, HOLD_ACTION: HOLD, RELEASE: DEFERRED, REQUEUE: INCOMING}
# What postsuper prints at the end, and logs for each message.
REPORT: dict[str, str] = {
    DELETE: "Deleted", HOLD_ACTION: "Placed on hold", RELEASE: "Released from hold",
    REQUEUE: "Requeued"}
LOGGED: dict[str, str] = {
    DELETE: "removed", HOLD_ACTION: "placed on hold", RELEASE: "released from hold",
    REQUEUE: "requeued"}


@dataclass(frozen=True)
class AdminResult:
    changed: tuple[str, ...]
    missing: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {"changed": list(self.changed), "missing": list(self.missing)}


def source_states(action: str, queue: str | None) -> frozenset[str]:
    """The states ``action`` looks in: postsuper's default, or the one queue named.

    ValueError for an unknown action or queue. Naming a queue the action never takes mail
    from (hold for -h, anything but hold for -H) selects nothing, as in postsuper; only
    delete reaches corrupt messages, which nothing else may touch."""
    if action not in ACTIONS:
        raise ValueError(f"unknown queue action {action!r}")
    if queue is None:
        return DEFAULT_QUEUES[action]
    if queue not in STATES:
        raise ValueError(f"unknown queue {queue!r} (expected one of {', '.join(STATES)})")
    if queue == CORRUPT and action != DELETE:
        return frozenset()
    if action == HOLD_ACTION:
        return frozenset((queue,)) - {HOLD}
    if action == RELEASE:
        return frozenset((queue,)) & {HOLD}
    return frozenset((queue,))


def report_line(action: str, count: int) -> str:
    """postsuper's summary, e.g. "Deleted: 3 messages"; "" when nothing changed."""
    if count <= 0:
        return ""
    return f"{REPORT[action]}: {count} message{'s' if count > 1 else ''}"


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" * len(values))


async def apply(db: aiosqlite.Connection, action: str, queue_ids: Sequence[str],
                from_states: Collection[str], now: float) -> list[str]:
    """Write operation: ``action`` on those of ``queue_ids`` in one of ``from_states``;
    returns the IDs changed."""
    if action not in ACTIONS:
        raise ValueError(f"unknown queue action {action!r}")
    states = sorted(set(from_states))
    ids = list(dict.fromkeys(queue_ids))
    if not ids or not states:
        return []
    where = f"queue_id IN ({_marks(ids)}) AND state IN ({_marks(states)})"
    params = (*ids, *states)
    if action == DELETE:
        rows = await db.execute_fetchall(
            f"DELETE FROM messages WHERE {where} RETURNING queue_id", params)
    elif action == REQUEUE:
        rows = await db.execute_fetchall(
            f"UPDATE messages SET state = ?, next_attempt = NULL, create_time = ? WHERE {where}"
            " RETURNING queue_id", (INCOMING, now, *params))
    else:
        rows = await db.execute_fetchall(
            f"UPDATE messages SET state = ? WHERE {where} RETURNING queue_id",
            (TARGET[action], *params))
    changed = sorted(row[0] for row in rows)
    if changed and action == DELETE:
        for table in ("recipients", "content"):
            await db.execute(
                f"DELETE FROM {table} WHERE queue_id IN ({_marks(changed)})", changed)
    elif changed and action == REQUEUE:
        await db.execute(
            "UPDATE recipients SET status = 'pending', dsn_status = NULL, reason = NULL,"
            f" relay = NULL WHERE done = 0 AND queue_id IN ({_marks(changed)})", changed)
    return changed


async def fetch_state(db: aiosqlite.Connection, queue_id: str) -> str | None:
    rows = list(await db.execute_fetchall(
        "SELECT state FROM messages WHERE queue_id = ?", (queue_id,)))
    return str(rows[0][0]) if rows else None


async def fetch_ids(db: aiosqlite.Connection, states: Collection[str], after: str,
                    limit: int) -> list[str]:
    """Up to ``limit`` queue IDs above ``after`` of messages in ``states``, in ID order."""
    chosen = sorted(set(states))
    if not chosen:
        return []
    rows = await db.execute_fetchall(
        f"SELECT queue_id FROM messages WHERE state IN ({_marks(chosen)}) AND queue_id > ?"
        " ORDER BY queue_id LIMIT ?", (*chosen, after, int(limit)))
    return [row[0] for row in rows]


async def batches(queue: Queue, ids: Iterable[str] | str, states: Collection[str],
                  size: int = BATCH) -> AsyncIterator[list[str]]:
    """The queue IDs to act on, ``size`` at a time: the given ones, or with ``ALL`` every
    message in ``states`` (paged by ID, so changes made meanwhile never loop)."""
    if isinstance(ids, str):
        if ids != ALL:
            raise ValueError(f"expected a list of queue IDs or {ALL!r}, not {ids!r}")
        after = ""
        while page := await queue.ids_in(states, after, size):
            yield page
            after = page[-1]
        return
    batch: list[str] = []
    for queue_id in ids:
        batch.append(queue_id)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def administer_offline(queue: Queue, action: str, ids: Iterable[str] | str,
                             queue_name: str | None = None, *,
                             progress: Callable[[int], None] | None = None) -> AdminResult:
    """postsuper on a queue no server is using: batches of one transaction each.

    ``progress`` is called with the number of IDs handled so far after each batch."""
    states = source_states(action, queue_name)
    changed: list[str] = []
    missing: list[str] = []
    done = 0
    async for batch in batches(queue, ids, states):
        hit = set(await queue.administer(action, batch, states))
        for queue_id in batch:
            if queue_id in hit:
                hit.discard(queue_id)  # an ID given twice counts once, as in postsuper
                changed.append(queue_id)
            else:
                missing.append(queue_id)
        done += len(batch)
        if progress is not None:
            progress(done)
    return AdminResult(tuple(changed), tuple(missing))
