"""The single queue writer: group commit over one SQLite connection.

Owns every transaction on the writer connection. Callers submit an operation (a coroutine
function taking the connection) and get its result only after the transaction holding it has
been committed with synchronous=FULL.

Must not: know what the operations do; decide policy.

Invariants:
- One task runs all writes, in submission order. It takes whatever is waiting (at most
  ``max_batch``), runs the operations inside one transaction, COMMITs once, then resolves
  every waiter. An operation that fails fails alone; its neighbours still commit: the batch
  is first run without savepoints (each costs two round trips to the database thread), and
  when an operation fails the transaction is rolled back and the batch run again with each
  operation under its own SAVEPOINT, so the failing one rolls back alone.
- When an error ends the whole transaction (SQLite may roll back by itself, e.g. on disk
  full) or COMMIT fails, nothing of the batch is stored, and every operation of the batch is
  retried in a transaction of its own, so each gets its own outcome.
- Errors reach the waiter as QueueFullError (SQLITE_FULL, ENOSPC, EDQUOT) or QueueWriteError
  (other SQLite and OS errors); KeyError/ValueError/QueueError from an operation pass as they
  are. The writer keeps running after all of them. CancelledError is never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from mailcore.queue.types import QueueError, QueueFullError, QueueWriteError

Operation = Callable[[aiosqlite.Connection], Awaitable[Any]]

DEFAULT_MAX_BATCH = 256
# Upper bounds (seconds) of the commit-latency buckets; a last, unbounded bucket follows.
COMMIT_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1.0, 2.5, 5.0)


@dataclass(frozen=True)
class WriterStats:
    transactions: int  # committed write transactions
    operations: int  # operations that committed successfully
    # Time from BEGIN to the end of COMMIT of each committed transaction (fsync included):
    # the total, and how many fell in each COMMIT_BUCKETS bucket (not cumulative; the last
    # element counts those above the largest bound).
    commit_seconds: float = 0.0
    commit_counts: tuple[int, ...] = ()


@dataclass(eq=False)
class _Request:
    op: Operation
    future: asyncio.Future[Any]


@dataclass(frozen=True)
class _Outcome:
    result: Any = None
    error: BaseException | None = None


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def map_error(exc: Exception) -> Exception:
    """The error a waiter sees for a failed operation."""
    if isinstance(exc, QueueError | KeyError | ValueError):
        return exc
    if _is_full(exc):
        mapped: Exception = QueueFullError(f"queue storage is full: {exc}")
    elif isinstance(exc, sqlite3.Error | OSError):
        mapped = QueueWriteError(f"queue write failed: {exc}")
    else:
        return exc
    mapped.__cause__ = exc
    return mapped


class Writer:
    def __init__(
        self, db: aiosqlite.Connection, *, group_commit: bool, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        self._db = db
        self._max_batch = max_batch if group_commit else 1
        self._requests: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._accepting = True
        self._transactions = 0
        self._operations = 0
        self._commit_seconds = 0.0
        self._commit_counts = [0] * (len(COMMIT_BUCKETS) + 1)

    @property
    def stats(self) -> WriterStats:
        return WriterStats(self._transactions, self._operations, self._commit_seconds,
                           tuple(self._commit_counts))

    def _committed(self, started: float, operations: int) -> None:
        elapsed = time.perf_counter() - started
        self._transactions += 1
        self._operations += operations
        self._commit_seconds += elapsed
        index = next((i for i, bound in enumerate(COMMIT_BUCKETS) if elapsed <= bound),
                     len(COMMIT_BUCKETS))
        self._commit_counts[index] += 1

    async def submit(self, op: Operation) -> Any:
        if not self._accepting:
            raise QueueWriteError("the queue is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests.put_nowait(_Request(op, future))
        return await future

    def stop(self) -> None:
        """Refuse new work; ``run`` returns once everything already submitted is done."""
        if self._accepting:
            self._accepting = False
            self._requests.put_nowait(None)

    async def run(self) -> None:
        batch: list[_Request] = []
        try:
            while True:
                batch, last = await self._next_batch()
                await self._write(batch)
                batch = []
                if last:
                    return
        finally:
            self._accepting = False
            self._fail_all(batch)

    async def _next_batch(self) -> tuple[list[_Request], bool]:
        item = await self._requests.get()
        batch: list[_Request] = []
        while item is not None:
            batch.append(item)
            if len(batch) >= self._max_batch or self._requests.empty():
                return batch, False
            item = self._requests.get_nowait()
        return batch, True

    def _fail_all(self, batch: list[_Request]) -> None:
        """Nobody may wait forever on a writer that has stopped."""
        pending = list(batch)
        while not self._requests.empty():
            item = self._requests.get_nowait()
            if item is not None:
                pending.append(item)
        for request in pending:
            if not request.future.done():
                request.future.set_exception(QueueWriteError("the queue writer has stopped"))

    async def _write(self, batch: list[_Request]) -> None:
        # A waiter that gave up before its turn (e.g. the SMTP session was cancelled) has
        # no one to tell about a commit, so its work is skipped.
        live = [request for request in batch if not request.future.done()]
        outcomes = await self._optimistic(live) if len(live) > 1 else None
        if outcomes is None and len(live) > 1:
            outcomes = await self._group(live)
        if outcomes is None:
            outcomes = [await self._single(request) for request in live]
        for request, outcome in zip(live, outcomes, strict=True):
            if request.future.done():
                continue
            if outcome.error is not None:
                request.future.set_exception(outcome.error)
            else:
                request.future.set_result(outcome.result)

    async def _optimistic(self, live: list[_Request]) -> list[_Outcome] | None:
        """The whole batch in one transaction without savepoints; None when anything failed
        (then nothing is stored and the caller runs the batch again with savepoints)."""
        db = self._db
        started = time.perf_counter()
        try:
            await db.execute("BEGIN IMMEDIATE")
            results = [await request.op(db) for request in live]
            await db.execute("COMMIT")
        except Exception:
            await self._rollback()
            return None
        self._committed(started, len(live))
        return [_Outcome(result=result) for result in results]

    async def _group(self, live: list[_Request]) -> list[_Outcome] | None:
        """One transaction for the whole batch; None means: nothing stored, retry singly."""
        db = self._db
        started = time.perf_counter()
        try:
            await db.execute("BEGIN IMMEDIATE")
            outcomes: list[_Outcome] = []
            for request in live:
                await db.execute("SAVEPOINT op")
                try:
                    result = await request.op(db)
                except Exception as exc:
                    if not db.in_transaction:
                        return None
                    await db.execute("ROLLBACK TO op")
                    await db.execute("RELEASE op")
                    outcomes.append(_Outcome(error=map_error(exc)))
                else:
                    await db.execute("RELEASE op")
                    outcomes.append(_Outcome(result=result))
            await db.execute("COMMIT")
        except Exception:
            await self._rollback()
            return None
        self._committed(started, sum(1 for outcome in outcomes if outcome.error is None))
        return outcomes

    async def _single(self, request: _Request) -> _Outcome:
        db = self._db
        started = time.perf_counter()
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await request.op(db)
                await db.execute("COMMIT")
            except Exception:
                await self._rollback()
                raise
        except Exception as exc:
            return _Outcome(error=map_error(exc))
        self._committed(started, 1)
        return _Outcome(result=result)

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            # SQLite may already have ended the transaction itself; then nothing is left.
            with contextlib.suppress(Exception):
                await self._db.execute("ROLLBACK")
