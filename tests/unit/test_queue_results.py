"""The scheduler's queue writes and reads: record_results, transition, page, due_page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.model import BOUNCED, DEFERRED, SENT, RecipientResult
from mailcore.queue import ACTIVE, HOLD, INCOMING, NewMessage, NewRecipient, Queue
from mailcore.queue import DEFERRED as Q_DEFERRED


def make_msg(rcpts: tuple[str, ...] = ("a@x.example", "b@x.example"), **kw: object) -> NewMessage:
    return NewMessage(
        sender="s@example.com", recipients=tuple(NewRecipient(r) for r in rcpts),
        content_path=None, content=b"Subject: t\r\n\r\nbody\r\n", size=20,
        arrival_time=1000.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    q = await Queue.open(tmp_path / "q", clock=lambda: 1000.0)
    try:
        yield q
    finally:
        await q.close()


async def test_record_results_updates_recipients_and_message(queue: Queue) -> None:
    qid = await queue.enqueue(make_msg(("a@x", "b@x", "c@x")))
    await queue.record_results(
        qid,
        [
            RecipientResult(0, SENT, "2.0.0", "250 ok", "mx[192.0.2.1]:25"),
            RecipientResult(1, DEFERRED, "4.4.1", "connect refused", "none"),
            RecipientResult(2, BOUNCED, "5.1.1", "550 no such user", "mx[192.0.2.1]:25"),
        ],
        state=Q_DEFERRED, next_attempt=1300.0, last_attempt=1000.0, attempt_count=1,
        warned_delay=True, notified=[2],
    )  # fmt: skip
    msg = await queue.get(qid)
    assert msg is not None
    assert (msg.state, msg.next_attempt, msg.last_attempt, msg.attempt_count, msg.warned_delay
            ) == (Q_DEFERRED, 1300.0, 1000.0, 1, True)
    got = [(r.status, r.dsn_status, r.reason, r.relay, r.done, r.notified)
           for r in msg.recipients]
    assert got == [
        ("sent", "2.0.0", "250 ok", "mx[192.0.2.1]:25", True, False),
        ("deferred", "4.4.1", "connect refused", "none", False, False),
        ("bounced", "5.1.1", "550 no such user", "mx[192.0.2.1]:25", True, True),
    ]


async def test_record_results_leaves_unnamed_fields(queue: Queue) -> None:
    qid = await queue.enqueue(make_msg())
    await queue.record_results(qid, [RecipientResult(1, SENT, "2.0.0", "ok")])
    msg = await queue.get(qid)
    assert msg is not None
    assert (msg.state, msg.next_attempt, msg.attempt_count) == (INCOMING, None, 0)
    assert [r.status for r in msg.recipients] == ["pending", "sent"]


async def test_record_results_is_all_or_nothing(queue: Queue) -> None:
    qid = await queue.enqueue(make_msg())
    with pytest.raises(KeyError):
        await queue.record_results(
            qid,
            [RecipientResult(0, SENT, "2.0.0", "ok"), RecipientResult(7, SENT, "2.0.0", "ok")],
            state=Q_DEFERRED,
        )
    msg = await queue.get(qid)
    assert msg is not None
    assert msg.state == INCOMING and [r.status for r in msg.recipients] == ["pending"] * 2
    with pytest.raises(KeyError):
        await queue.record_results("NOSUCHID0000", [], state=Q_DEFERRED)
    with pytest.raises(ValueError):
        await queue.record_results(qid, [RecipientResult(0, "pending", "", "")])


async def test_transition_is_compare_and_set(queue: Queue) -> None:
    qid = await queue.enqueue(make_msg())
    assert await queue.transition(qid, INCOMING, ACTIVE)
    assert not await queue.transition(qid, INCOMING, ACTIVE)
    assert await queue.transition(qid, ACTIVE, Q_DEFERRED, next_attempt=5.0)
    msg = await queue.get(qid)
    assert msg is not None and (msg.state, msg.next_attempt) == (Q_DEFERRED, 5.0)
    assert not await queue.transition("NOSUCHID0000", INCOMING, ACTIVE)


async def test_page_and_due_page(queue: Queue) -> None:
    ids = [await queue.enqueue(make_msg(state=Q_DEFERRED)) for _ in range(5)]
    held = await queue.enqueue(make_msg(state=HOLD))
    for qid, when in zip(ids, (100.0, 900.0, 2000.0, 50.0, 3000.0), strict=True):
        await queue.set_state(qid, Q_DEFERRED, next_attempt=when)
    first = await queue.page(Q_DEFERRED, "", 2)
    assert [m.queue_id for m in first] == ids[:2]
    assert len(first[0].recipients) == 2
    rest = await queue.page(Q_DEFERRED, first[-1].queue_id, 10)
    assert [m.queue_id for m in rest] == ids[2:]
    due = await queue.due_page(Q_DEFERRED, 1000.0, "", 10)
    assert [m.queue_id for m in due] == [ids[0], ids[1], ids[3]]
    due = await queue.due_page(Q_DEFERRED, 1000.0, ids[0], 1)
    assert [m.queue_id for m in due] == [ids[1]]
    assert [m.queue_id for m in await queue.page(HOLD, "", 10)] == [held]
