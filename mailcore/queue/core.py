"""``Queue``: the mail queue object every other component talks to.

Owns the two connections to queue_directory/queue.db (one for the writer task, one for
reads), the writer task itself, and queue-ID allocation.

Must not: schedule deliveries or decide policy; the scheduler moves messages between states.

Invariants: every write — enqueue, set_state, delete, recovery — goes through the one writer
task; ``enqueue`` returns only after its message is committed with synchronous=FULL; the writer
task is created by ``open`` and stopped by ``close`` (cancelled if ``close`` is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

import aiosqlite

from mailcore.model import RecipientResult
from mailcore.queue import admin, reads, schema, writes
from mailcore.queue.space import free_space_ok
from mailcore.queue.types import (
    STATES,
    NewMessage,
    QueuedMessage,
    QueuePaths,
    QueueReadError,
    RecoveryReport,
    make_queue_dirs,
    queue_paths,
)
from mailcore.queue.writer import DEFAULT_MAX_BATCH, Writer, WriterStats
from mailcore.queueid import QueueIdAllocator


def _prepare_files(paths: QueuePaths) -> None:
    make_queue_dirs(paths)
    schema.create_db_file(paths.db)


class Queue:
    """Open with ``await Queue.open(queue_directory)``; always ``await queue.close()``."""

    def __init__(
        self,
        paths: QueuePaths,
        writer_db: aiosqlite.Connection,
        reader_db: aiosqlite.Connection,
        *,
        group_commit: bool,
        max_batch: int,
        clock: Callable[[], float],
    ) -> None:
        self.paths = paths
        self._writer_db = writer_db
        self._reader_db = reader_db
        self._read_lock = asyncio.Lock()
        self._clock = clock
        self._ids = QueueIdAllocator()
        self._writer = Writer(writer_db, group_commit=group_commit, max_batch=max_batch)
        self._task = asyncio.create_task(self._writer.run(), name="mailcore-queue-writer")
        self._closed = False
        self.recovery: RecoveryReport | None = None  # what open() found; logged by the caller

    @classmethod
    async def open(
        cls,
        queue_directory: Path,
        *,
        group_commit: bool = True,
        clock: Callable[[], float] = time.time,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_page_count: int | None = None,
    ) -> Queue:
        """Open (creating if needed) the queue and run crash recovery.

        ``max_page_count`` caps the database size in pages (mailcore's own knob; tests use it
        to provoke the disk-full path)."""
        paths = queue_paths(queue_directory)
        await asyncio.get_running_loop().run_in_executor(None, _prepare_files, paths)
        writer_db = await schema.connect(paths.db)
        reader_db: aiosqlite.Connection | None = None
        try:
            if max_page_count is not None:
                await writer_db.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
            reader_db = await schema.connect(paths.db)
        except BaseException:
            await writer_db.close()
            raise
        queue = cls(
            paths, writer_db, reader_db,
            group_commit=group_commit, max_batch=max_batch, clock=clock,
        )  # fmt: skip
        try:
            queue.recovery = await queue.recover()
        except BaseException:
            await queue.close()
            raise
        return queue

    @property
    def stats(self) -> WriterStats:
        """Committed transactions and operations so far (group-commit instrumentation)."""
        return self._writer.stats

    def new_queue_id(self) -> str:
        """Allocate an ID now (e.g. for a Received: header); uniqueness is checked at insert."""
        return self._ids.allocate()

    async def enqueue(self, msg: NewMessage) -> str:
        """Store a message durably and return its queue ID, only after COMMIT."""
        return await self._writer.submit(
            lambda db: writes.insert_message(db, msg, self._ids.allocate, self._clock())
        )

    async def recover(self) -> RecoveryReport:
        """Schema check and migration, active → incoming, damaged messages → corrupt."""
        return await self._writer.submit(lambda db: writes.recover(db, self.paths.db))

    async def set_state(
        self, queue_id: str, state: str, *, next_attempt: float | None = None
    ) -> None:
        """Move a message to ``state``; KeyError when it does not exist."""
        if state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        await self._writer.submit(lambda db: writes.update_state(db, queue_id, state, next_attempt))

    async def delete(self, queue_id: str) -> bool:
        """Remove a message with its recipients and content; False if it was not there."""
        return await self._writer.submit(lambda db: writes.delete_message(db, queue_id))

    async def record_results(
        self,
        queue_id: str,
        results: Iterable[RecipientResult] = (),
        *,
        state: str | None = None,
        next_attempt: float | None = None,
        last_attempt: float | None = None,
        attempt_count: int | None = None,
        warned_delay: bool | None = None,
        notified: Iterable[int] = (),
    ) -> None:
        """In one transaction: each recipient's outcome (status, dsn, reason, relay; done when
        sent or bounced), the ``notified`` flag of the given recipient seqs, and the message
        fields given (None leaves a field unchanged). KeyError for an unknown message or
        recipient, and then nothing is stored."""
        rows = tuple(results)
        seqs = tuple(notified)
        update = writes.MessageUpdate(
            state, next_attempt, last_attempt, attempt_count, warned_delay
        )
        await self._writer.submit(
            lambda db: writes.record_results(db, queue_id, rows, update, seqs)
        )

    async def transition(
        self, queue_id: str, from_state: str, to_state: str, *, next_attempt: float | None = None
    ) -> bool:
        """Compare-and-set of a message's state; False when it is no longer in ``from_state``."""
        return await self._writer.submit(
            lambda db: writes.transition(db, queue_id, from_state, to_state, next_attempt)
        )

    async def administer(self, action: str, queue_ids: Sequence[str],
                         from_states: Collection[str]) -> list[str]:
        """postsuper's delete/hold/release/requeue (admin.py) on those of ``queue_ids`` that
        are in one of ``from_states``, in one transaction; returns the IDs changed."""
        ids = list(queue_ids)
        states = frozenset(from_states)
        return await self._writer.submit(
            lambda db: admin.apply(db, action, ids, states, self._clock()))

    async def state_of(self, queue_id: str) -> str | None:
        """The message's state now, or None when it is not in the queue."""
        async with self._read_lock:
            return await admin.fetch_state(self._reader_db, queue_id)

    async def ids_in(self, states: Collection[str], after: str, limit: int) -> list[str]:
        """Up to ``limit`` queue IDs above ``after`` in ``states`` (keyset paging)."""
        async with self._read_lock:
            return await admin.fetch_ids(self._reader_db, states, after, limit)

    async def page(self, state: str, after: str, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` messages in ``state`` with queue_id > ``after`` (keyset paging)."""
        async with self._read_lock:
            return await reads.fetch_page(self._reader_db, state, after, limit)

    async def due_page(
        self, state: str, now: float, after: str, limit: int
    ) -> list[QueuedMessage]:
        """Like ``page``, only messages whose next_attempt is unset or not after ``now``."""
        async with self._read_lock:
            return await reads.fetch_due_page(self._reader_db, state, now, after, limit)

    async def free_space_ok(self, min_free_bytes: int, message_size: int) -> bool:
        """queue_minfree check for a message of ``message_size`` bytes (see space.py)."""
        return await free_space_ok(self.paths.root, min_free_bytes, message_size)

    async def counts(self) -> Mapping[str, int]:
        async with self._read_lock:
            return await reads.fetch_counts(self._reader_db)

    async def get(self, queue_id: str) -> QueuedMessage | None:
        async with self._read_lock:
            return await reads.fetch_message(self._reader_db, queue_id)

    async def iter_messages(
        self, state: str | None = None, *, page: int = 500
    ) -> AsyncIterator[QueuedMessage]:
        """Messages in queue_id order, fetched ``page`` at a time; each page is a consistent
        snapshot, and changes made between pages may or may not be seen."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        if page < 1:
            raise ValueError("page must be at least 1")
        after = ""
        while True:
            async with self._read_lock:
                batch = await reads.fetch_page(self._reader_db, state, after, page)
            for message in batch:
                yield message
            if len(batch) < page:
                return
            after = batch[-1].queue_id

    async def read_content(self, queue_id: str) -> AsyncIterator[bytes]:
        """The message content, chunk by chunk; QueueReadError if the message is missing or
        is deleted while being read."""
        async with self._read_lock:
            chunks = await reads.fetch_chunk_count(self._reader_db, queue_id)
        if chunks is None:
            raise QueueReadError(f"{queue_id}: no such message in the queue")
        for seq in range(chunks):
            async with self._read_lock:
                data = await reads.fetch_chunk(self._reader_db, queue_id, seq)
            if data is None:
                raise QueueReadError(f"{queue_id}: content chunk {seq} is missing")
            yield data

    async def close(self) -> None:
        """Finish every write already submitted, stop the writer, checkpoint, close."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        try:
            await self._task
        finally:
            if not self._task.done():
                self._task.cancel()
            await self._reader_db.close()
            try:
                if self._task.done() and not self._task.cancelled():
                    # Fold the WAL back into queue.db so a stopped queue is one file. Not
                    # fatal if it fails: everything in the WAL is committed already.
                    with contextlib.suppress(sqlite3.Error):
                        await self._writer_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                await self._writer_db.close()
