"""The SQLite mail queue: enqueue, group commit, content chunks, failures, reads."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.queue import (
    CHUNK_SIZE,
    CORRUPT,
    DEFERRED,
    HOLD,
    INCOMING,
    NewMessage,
    NewRecipient,
    Queue,
    QueueFullError,
    QueueReadError,
    QueueWriteError,
    open_reader,
    queue_paths,
)
from mailcore.queueid import is_queue_id


def make_msg(
    content: bytes | None = b"Subject: hi\r\n\r\nbody\r\n",
    *,
    path: Path | None = None,
    sender: str = "alice@example.com",
    rcpts: tuple[str, ...] = ("bob@example.net",),
    **kwargs: object,
) -> NewMessage:
    size = len(content) if content is not None else (path.stat().st_size if path else 0)
    return NewMessage(
        sender=sender,
        recipients=tuple(NewRecipient(r) for r in rcpts),
        content_path=path,
        content=None if path is not None else content,
        size=size,
        arrival_time=1_700_000_000.5,
        envid=None,
        ret=None,
        attrs={"client_address": "127.0.0.1"},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    q = await Queue.open(tmp_path / "q", clock=lambda: 1_700_000_100.0)
    try:
        yield q
    finally:
        await q.close()


def table_rows(tmp_path: Path, table: str) -> int:
    conn = open_reader(queue_paths(tmp_path / "q").db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


async def read_all(queue: Queue, queue_id: str) -> bytes:
    return b"".join([chunk async for chunk in queue.read_content(queue_id)])


async def test_enqueue_get_round_trip(queue: Queue) -> None:
    msg = NewMessage(
        sender="alice@example.com",
        recipients=(
            NewRecipient("bob@example.net", "Bob@Example.NET", "SUCCESS,FAILURE", "rfc822;b@x"),
            NewRecipient("carol@example.org"),
        ),
        content_path=None,
        content=b"hello\r\n",
        size=7,
        arrival_time=1_700_000_000.25,
        envid="ENV1",
        ret="HDRS",
        attrs={"client_address": "192.0.2.1", "helo": "mx.example", "sasl_username": "al"},
    )
    queue_id = await queue.enqueue(msg)
    assert is_queue_id(queue_id)
    got = await queue.get(queue_id)
    assert got is not None
    assert (got.queue_id, got.state, got.sender) == (queue_id, INCOMING, "alice@example.com")
    assert (got.size, got.content_size, got.envid, got.ret) == (7, 7, "ENV1", "HDRS")
    assert got.arrival_time == 1_700_000_000.25
    assert got.create_time == 1_700_000_100.0
    assert dict(got.attrs) == dict(msg.attrs)
    assert [r.address for r in got.recipients] == ["bob@example.net", "carol@example.org"]
    first = got.recipients[0]
    assert (first.orig_rcpt, first.notify, first.orcpt) == (
        "Bob@Example.NET",
        "SUCCESS,FAILURE",
        "rfc822;b@x",
    )
    assert {r.status for r in got.recipients} == {"pending"}
    assert not any(r.done or r.notified for r in got.recipients)
    assert (got.attempt_count, got.next_attempt, got.warned_delay) == (0, None, False)
    assert await read_all(queue, queue_id) == b"hello\r\n"
    assert await queue.get("0000000000FF") is None


async def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    for group_commit in (True, False):
        q = await Queue.open(tmp_path / f"q{group_commit}", group_commit=group_commit)
        try:
            before = q.stats.transactions
            ids = await asyncio.gather(*(q.enqueue(make_msg(b"m%d" % i)) for i in range(200)))
            used = q.stats.transactions - before
            assert len(set(ids)) == 200
            assert (await q.counts())[INCOMING] == 200
            if group_commit:
                assert used < 200
            else:
                assert used == 200
        finally:
            await q.close()


async def test_large_content_is_chunked_and_exact(queue: Queue, tmp_path: Path) -> None:
    blob = os.urandom(5 * 1024 * 1024 + 123)
    spooled = tmp_path / "spooled"
    spooled.write_bytes(blob)
    queue_id = await queue.enqueue(make_msg(path=spooled))
    chunks = [chunk async for chunk in queue.read_content(queue_id)]
    assert len(chunks) == -(-len(blob) // CHUNK_SIZE)
    assert max(len(c) for c in chunks) == CHUNK_SIZE
    assert b"".join(chunks) == blob
    got = await queue.get(queue_id)
    assert got is not None and got.content_size == len(blob)


async def test_bad_message_fails_alone_in_a_batch(queue: Queue, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"good content\r\n")
    vanishing = tmp_path / "vanishing"
    vanishing.write_bytes(b"x" * 1000)
    bad = make_msg(path=vanishing, rcpts=("bad@example.com",))
    vanishing.unlink()  # gone by the time the writer reads it
    before = queue.stats.transactions
    results = await asyncio.gather(
        queue.enqueue(make_msg(path=good)),
        queue.enqueue(bad),
        queue.enqueue(make_msg(b"third")),
        return_exceptions=True,
    )
    assert isinstance(results[1], QueueWriteError)
    assert not isinstance(results[1], QueueFullError)
    assert all(isinstance(r, str) for r in (results[0], results[2]))
    assert queue.stats.transactions - before == 1  # neighbours still shared one commit
    assert table_rows(tmp_path, "messages") == 2
    assert table_rows(tmp_path, "recipients") == 2
    assert table_rows(tmp_path, "content") == 2
    assert await read_all(queue, str(results[0])) == b"good content\r\n"


async def test_full_database_maps_to_queue_full(tmp_path: Path) -> None:
    q = await Queue.open(tmp_path / "q", max_page_count=40)
    try:
        big = make_msg(os.urandom(1024 * 1024))
        results = await asyncio.gather(
            q.enqueue(make_msg(b"small one")),
            q.enqueue(big),
            q.enqueue(make_msg(b"small two")),
            return_exceptions=True,
        )
        assert isinstance(results[1], QueueFullError)
        assert all(isinstance(r, str) for r in (results[0], results[2]))
        with pytest.raises(QueueFullError):
            await q.enqueue(big)
        # The writer keeps running after the failure.
        later = await q.enqueue(make_msg(b"after"))
        assert await read_all(q, later) == b"after"
        assert (await q.counts())[INCOMING] == 3
    finally:
        await q.close()
    assert table_rows(tmp_path, "content") == 3


async def test_preallocated_id_and_duplicate(queue: Queue) -> None:
    queue_id = queue.new_queue_id()
    assert await queue.enqueue(make_msg(queue_id=queue_id)) == queue_id
    with pytest.raises(QueueWriteError, match="already in use"):
        await queue.enqueue(make_msg(b"other", queue_id=queue_id))
    assert await read_all(queue, queue_id) == make_msg().content


async def test_ids_unique_over_10k(queue: Queue) -> None:
    ids = [queue.new_queue_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(is_queue_id(i) for i in ids)
    assert ids == sorted(ids)


async def test_state_changes_delete_and_counts(queue: Queue) -> None:
    a = await queue.enqueue(make_msg(b"a"))
    b = await queue.enqueue(make_msg(b"b", state=HOLD))
    await queue.set_state(a, DEFERRED, next_attempt=1_700_000_500.0)
    got = await queue.get(a)
    assert got is not None and (got.state, got.next_attempt) == (DEFERRED, 1_700_000_500.0)
    counts = await queue.counts()
    assert (counts[DEFERRED], counts[HOLD], counts[INCOMING], counts[CORRUPT]) == (1, 1, 0, 0)
    with pytest.raises(KeyError):
        await queue.set_state("0000000000AA", DEFERRED)
    with pytest.raises(ValueError):
        await queue.set_state(a, "bogus")
    assert await queue.delete(b) is True
    assert await queue.delete(b) is False
    assert await queue.get(b) is None
    with pytest.raises(QueueReadError):
        await read_all(queue, b)
    assert sum((await queue.counts()).values()) == 1


async def test_iter_messages_pages_lazily(queue: Queue) -> None:
    ids = [await queue.enqueue(make_msg(b"%d" % i)) for i in range(12)]
    await queue.set_state(ids[3], HOLD)
    seen: list[str] = []
    late: str | None = None
    async for message in queue.iter_messages(page=5):
        seen.append(message.queue_id)
        assert message.recipients and message.recipients[0].address == "bob@example.net"
        if len(seen) == 5:
            # Enqueued after the first page was read: only a paged reader can see it.
            late = await queue.enqueue(make_msg(b"late"))
    assert seen == [*ids, late]
    held = [m.queue_id async for m in queue.iter_messages(HOLD, page=1)]
    assert held == [ids[3]]
    incoming = [m.queue_id async for m in queue.iter_messages(INCOMING, page=2)]
    assert incoming == [i for i in [*ids, late] if i != ids[3]]


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    q = await Queue.open(tmp_path / "q")
    ids = [await q.enqueue(make_msg(b"content %d" % i, rcpts=("x@a", "y@b"))) for i in range(5)]
    await q.set_state(ids[0], HOLD)
    before = [m async for m in q.iter_messages()]
    await q.close()
    q = await Queue.open(tmp_path / "q")
    try:
        after = [m async for m in q.iter_messages()]
        assert after == before
        assert [await read_all(q, i) for i in ids] == [b"content %d" % i for i in range(5)]
        assert q.recovery is not None and q.recovery.corrupted == 0
    finally:
        await q.close()


async def test_close_drains_and_then_refuses(tmp_path: Path) -> None:
    q = await Queue.open(tmp_path / "q")
    tasks = [asyncio.create_task(q.enqueue(make_msg(b"%d" % i))) for i in range(20)]
    await asyncio.sleep(0)  # let every task submit its request
    await q.close()
    ids = [t.result() for t in tasks]
    with pytest.raises(QueueWriteError):
        await q.enqueue(make_msg())
    assert table_rows(tmp_path, "messages") == len(set(ids)) == 20
    # The WAL was checkpointed into queue.db on close.
    wal = queue_paths(tmp_path / "q").db.with_name("queue.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0


async def test_reader_sees_committed_data_while_open(queue: Queue, tmp_path: Path) -> None:
    queue_id = await queue.enqueue(make_msg())
    conn = open_reader(queue.paths.db)
    try:
        row = conn.execute("SELECT state FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
        assert row["state"] == INCOMING
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM messages")
    finally:
        conn.close()


async def test_layout_and_permissions(queue: Queue, tmp_path: Path) -> None:
    paths = queue_paths(tmp_path / "q")
    assert paths == queue.paths
    for directory in (paths.root, paths.maildrop, paths.spool):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.db.stat().st_mode) == 0o600
    assert paths.db.name == "queue.db" and paths.maildrop.name == "maildrop"


def test_new_message_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        make_msg(None)
    with pytest.raises(ValueError, match="recipient"):
        make_msg(rcpts=())
    with pytest.raises(ValueError, match="state"):
        make_msg(state="active")
    with pytest.raises(ValueError, match="str to str"):
        NewMessage("a@b", (NewRecipient("c@d"),), None, b"x", 1, 0.0, attrs={"n": 1})  # type: ignore[dict-item]
