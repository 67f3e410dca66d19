"""The queue manager with a real SQLite queue and fake resolver, agents, notifier and time.

Time is virtual: the clock runs SCALE times faster than the event loop's, and the injected
sleep divides by SCALE, so minutes of scheduler time pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailcore.config.core import from_mapping
from mailcore.log import MailLog
from mailcore.model import (
    BOUNCED,
    DEFERRED,
    SENT,
    Delays,
    DeliveryRequest,
    DeliveryResult,
    RecipientResult,
    Route,
)
from mailcore.queue import DEFERRED as Q_DEFERRED
from mailcore.queue import HOLD, INCOMING, NewMessage, NewRecipient, Queue, QueuedMessage
from mailcore.scheduler import QueueManager

START = 1_700_000_000.0


class FakeTime:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()

    def clock(self) -> float:
        return START + (self.loop.time() - self.t0) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.scale)


@dataclass
class Notices:
    bounced: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    delayed: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    succeeded: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


class RecordingNotifier:
    def __init__(self) -> None:
        self.notices = Notices()
        self.actions: dict[int, str] = {}

    async def bounced(self, message: QueuedMessage, recipients: tuple) -> None:
        self.notices.bounced.append((message.queue_id, tuple(r.seq for r in recipients)))

    async def delayed(self, message: QueuedMessage, recipients: tuple) -> None:
        self.notices.delayed.append((message.queue_id, tuple(r.seq for r in recipients)))

    async def succeeded(self, message: QueuedMessage, recipients: tuple,
                        actions: dict[int, str] | None = None) -> None:
        self.notices.succeeded.append((message.queue_id, tuple(r.seq for r in recipients)))
        self.actions.update(actions or {})


async def resolve(message: QueuedMessage, recipient: str) -> Route:
    domain = recipient.rpartition("@")[2]
    transport = "local" if domain == "localhost" else "smtp"
    return Route(transport, domain, recipient)


def outcome(request: DeliveryRequest, status: str, dsn: str, reason: str,
            relay: str = "none") -> DeliveryResult:
    return DeliveryResult(
        request.queue_id,
        tuple(RecipientResult(r.seq, status, dsn, reason, relay) for r in request.recipients),
        Delays(setup=0.1, transmission=0.2),
    )


async def deliver_ok(request: DeliveryRequest) -> DeliveryResult:
    return outcome(request, SENT, "2.0.0", "250 2.0.0 Ok", f"{request.nexthop}[192.0.2.1]:25")


Agent = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]


class Harness:
    def __init__(self, queue: Queue, time: FakeTime, settings: dict[str, str],
                 agents: dict[str, Agent], grace: float = 10.0) -> None:
        self.queue = queue
        self.time = time
        self.out = io.StringIO()
        self.notifier = RecordingNotifier()
        log = MailLog(hostname="mx.example.org", stream=self.out, clock=time.clock)
        self.qm = QueueManager(
            from_mapping(settings), queue, resolve, agents, log, notifier=self.notifier,
            clock=time.clock, sleep=time.sleep, shutdown_grace=grace,
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.qm.run())

    async def stop(self) -> None:
        self.qm.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)

    async def until(self, condition: Callable[[], Awaitable[bool]], real_seconds: float = 3.0
                    ) -> None:
        for _ in range(int(real_seconds / 0.005)):
            if await condition():
                return
            assert self.task is None or not self.task.done(), self.task.exception()
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    async def count(self, state: str | None = None) -> int:
        counts = await self.queue.counts()
        return sum(counts.values()) if state is None else counts[state]

    def lines(self) -> list[str]:
        return [line.split("]: ", 1)[1] for line in self.out.getvalue().splitlines()]


def new(rcpts: tuple[str, ...], *, sender: str = "alice@example.org", state: str = INCOMING,
        arrival: float = START, orig: str | None = None, notify: str | None = None
        ) -> NewMessage:
    return NewMessage(
        sender=sender,
        recipients=tuple(NewRecipient(r, orig_rcpt=orig, notify=notify) for r in rcpts),
        content_path=None, content=b"Subject: t\r\n\r\nhello\r\n", size=22,
        arrival_time=arrival, state=state,
    )  # fmt: skip


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[Queue]:
    q = await Queue.open(tmp_path / "q", clock=lambda: START)
    try:
        yield q
    finally:
        await q.close()


async def test_delivers_logs_and_removes(queue: Queue) -> None:
    time = FakeTime(scale=1.0)
    h = Harness(queue, time, {}, {"smtp": deliver_ok})
    qid = await queue.enqueue(new(("Bob@b.example",), orig="bob@b.example", notify="SUCCESS"))
    qid2 = await queue.enqueue(new(("carol@c.example",), orig="x@c.example"))
    h.start()
    await h.until(lambda: _empty(h))
    await h.stop()
    lines = h.lines()
    pattern = (rf"^{qid2}: to=<carol@c\.example>, orig_to=<x@c\.example>, "
               r"relay=c\.example\[192\.0\.2\.1\]:25, delay=[0-9.]+, "
               r"delays=[0-9.]+/[0-9.]+/0\.1/0\.2, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok\)$")
    assert any(re.match(pattern, line) for line in lines), lines
    # orig_to is left out when it differs only in case
    assert any(line.startswith(f"{qid}: to=<Bob@b.example>, relay=") for line in lines)
    assert f"{qid}: removed" in lines and f"{qid2}: removed" in lines
    assert h.notifier.notices.succeeded == [(qid, (0,))]


async def _empty(h: Harness) -> bool:
    return await h.count() == 0


async def test_recipients_grouped_by_destination_and_limit(queue: Queue) -> None:
    requests: list[tuple[str, int]] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        requests.append((request.nexthop, len(request.recipients)))
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {"smtp_destination_recipient_limit": "3"},
                {"smtp": agent})
    rcpts = (*(f"u{i}@a.example" for i in range(7)), "v@b.example", "w@b.example")
    await queue.enqueue(new(rcpts))
    h.start()
    await h.until(lambda: _empty(h))
    await h.stop()
    assert sorted(requests) == [("a.example", 1), ("a.example", 3), ("a.example", 3),
                                ("b.example", 2)]


async def test_deferral_records_backoff_and_attempt(queue: Queue) -> None:
    async def agent(request: DeliveryRequest) -> DeliveryResult:
        return outcome(request, DEFERRED, "4.2.0", "450 mailbox busy", "mx[192.0.2.1]:25")

    time = FakeTime(1.0)
    h = Harness(queue, time, {"minimal_backoff_time": "300s"}, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await h.until(lambda: _state_is(queue, qid, Q_DEFERRED))
    await h.stop()
    msg = await queue.get(qid)
    assert msg is not None
    assert msg.attempt_count == 1
    assert msg.next_attempt is not None
    assert 299 <= msg.next_attempt - time.clock() <= 300  # age ~0 → minimal_backoff_time
    assert [(r.status, r.dsn_status, r.done) for r in msg.recipients] == [
        ("deferred", "4.2.0", False)]
    assert any("status=deferred (450 mailbox busy)" in line for line in h.lines())


async def _state_is(queue: Queue, qid: str, state: str) -> bool:
    msg = await queue.get(qid)
    return msg is not None and msg.state == state


async def test_retries_follow_backoff_until_lifetime_bounce(queue: Queue) -> None:
    attempts: list[float] = []
    time = FakeTime(scale=2000.0)

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        attempts.append(time.clock())
        return outcome(request, DEFERRED, "4.4.2", "lost connection", "mx[192.0.2.1]:25")

    settings = {"minimal_backoff_time": "100s", "maximal_backoff_time": "400s",
                "queue_run_delay": "50s", "maximal_queue_lifetime": "1500s",
                "default_destination_concurrency_failed_cohort_limit": "0"}
    h = Harness(queue, time, settings, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await h.until(lambda: _empty(h), real_seconds=5)
    await h.stop()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # waits of 100, 100, 200, 400, 400 … plus up to one queue_run_delay of scan latency
    assert len(attempts) >= 4
    assert 100 <= gaps[0] < 100 + 50 + 20
    assert all(gap <= 400 + 50 + 20 for gap in gaps)
    assert max(gaps) >= 400
    assert attempts[-1] - START >= 1500 - 1
    assert f"{qid}: from=<alice@example.org>, status=expired, returned to sender" in h.lines()
    assert h.notifier.notices.bounced == [(qid, (0,))]


async def test_zero_lifetime_means_one_attempt_and_null_sender_uses_bounce_lifetime(
    queue: Queue,
) -> None:
    calls: list[str] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        calls.append(request.queue_id)
        return outcome(request, DEFERRED, "4.2.0", "try later")

    h = Harness(queue, FakeTime(1.0), {"bounce_queue_lifetime": "0"}, {"smtp": agent})
    bounce = await queue.enqueue(new(("a@a.example",), sender=""))
    normal = await queue.enqueue(new(("b@a.example",)))
    h.start()
    await h.until(lambda: _state_is(queue, normal, Q_DEFERRED))
    await h.until(lambda: _gone(queue, bounce))
    await h.stop()
    assert calls.count(bounce) == 1
    assert h.notifier.notices.bounced == [(bounce, (0,))]
    assert (await queue.get(normal)) is not None


async def _gone(queue: Queue, qid: str) -> bool:
    return await queue.get(qid) is None


async def test_delay_warning_sent_once(queue: Queue) -> None:
    async def agent(request: DeliveryRequest) -> DeliveryResult:
        return outcome(request, DEFERRED, "4.2.0", "try later")

    time = FakeTime(2000.0)
    settings = {"delay_warning_time": "300s", "minimal_backoff_time": "100s",
                "maximal_backoff_time": "100s", "queue_run_delay": "50s"}
    h = Harness(queue, time, settings, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example",), arrival=time.clock()))
    h.start()
    await h.until(lambda: _attempts_at_least(queue, qid, 6), real_seconds=5)
    await h.stop()
    assert h.notifier.notices.delayed == [(qid, (0,))]
    msg = await queue.get(qid)
    assert msg is not None and msg.warned_delay


async def _attempts_at_least(queue: Queue, qid: str, n: int) -> bool:
    msg = await queue.get(qid)
    return msg is not None and msg.attempt_count >= n


async def test_hold_is_never_scheduled(queue: Queue) -> None:
    calls: list[str] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        calls.append(request.queue_id)
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1000.0), {"queue_run_delay": "10s"}, {"smtp": agent})
    held = await queue.enqueue(new(("a@a.example",), state=HOLD))
    other = await queue.enqueue(new(("b@a.example",)))
    h.start()
    await h.until(lambda: _gone(queue, other))
    h.qm.flush()
    await asyncio.sleep(0.05)  # 50 s of scheduler time, several deferred scans
    await h.stop()
    assert calls == [other]
    assert await _state_is(queue, held, HOLD)


async def test_defer_transports_until_flush(queue: Queue) -> None:
    calls: list[str] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        calls.append(request.queue_id)
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {"defer_transports": "smtp"}, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await h.until(lambda: _state_is(queue, qid, Q_DEFERRED))
    assert calls == []
    assert any(line.startswith(f"{qid}: to=<a@a.example>, relay=none, delay=")
               and line.endswith("dsn=4.3.2, status=deferred (deferred transport)")
               for line in h.lines())
    h.qm.flush()
    await h.until(lambda: _gone(queue, qid))
    await h.stop()
    assert calls == [qid]


async def test_flush_id_and_flush_site(queue: Queue) -> None:
    calls: list[str] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        calls.append(request.queue_id)
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent})
    later = START + 10_000
    ids = {}
    for name in ("a", "b", "c"):
        ids[name] = await queue.enqueue(new((f"x@{name}.example",), state=Q_DEFERRED))
        await queue.set_state(ids[name], Q_DEFERRED, next_attempt=later)
    h.start()
    await asyncio.sleep(0.05)
    assert calls == []  # not due
    assert await h.qm.flush_site("B.example") == 1
    await h.until(lambda: _gone(queue, ids["b"]))
    assert await h.qm.flush_id(ids["c"])
    assert not await h.qm.flush_id("NOSUCHID0000")
    await h.until(lambda: _gone(queue, ids["c"]))
    await h.stop()
    assert calls == [ids["b"], ids["c"]]
    assert await _state_is(queue, ids["a"], Q_DEFERRED)


async def test_incoming_and_deferred_alternate(queue: Queue) -> None:
    order: list[str] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        order.append(request.queue_id)
        return await deliver_ok(request)

    deferred = [await queue.enqueue(new(("d@d.example",), state=Q_DEFERRED)) for _ in range(4)]
    incoming = [await queue.enqueue(new(("i@i.example",))) for _ in range(4)]
    h = Harness(queue, FakeTime(1.0), {"qmgr_message_active_limit": "1"}, {"smtp": agent})
    h.start()
    await h.until(lambda: _empty(h))
    await h.stop()
    kinds = ["d" if qid in deferred else "i" for qid in order]
    assert sorted(order) == sorted(deferred + incoming)
    assert kinds in (["i", "d"] * 4, ["d", "i"] * 4), kinds


async def test_active_set_is_bounded_and_read_in_pages(queue: Queue) -> None:
    peak = 0

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        nonlocal peak
        peak = max(peak, len(h.qm._active))
        await asyncio.sleep(0.001)
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {"qmgr_message_active_limit": "3"}, {"smtp": agent})
    for i in range(150):  # more than one read page (100)
        await queue.enqueue(new((f"u@d{i % 7}.example",)))
    h.start()
    await h.until(lambda: _empty(h), real_seconds=8)
    await h.stop()
    assert peak == 3
    assert sum(1 for line in h.lines() if line.endswith(": removed")) == 150


async def test_window_grows_to_the_limit_and_never_beyond(queue: Queue) -> None:
    running = peak = 0
    peaks: list[int] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        peaks.append(running)
        await asyncio.sleep(0.002)
        running -= 1
        return await deliver_ok(request)

    settings = {"initial_destination_concurrency": "2",
                "smtp_destination_concurrency_limit": "6"}
    h = Harness(queue, FakeTime(1.0), settings, {"smtp": agent})
    for _ in range(60):
        await queue.enqueue(new(("u@same.example",)))
    h.start()
    await h.until(lambda: _empty(h), real_seconds=8)
    await h.stop()
    assert max(peaks[:2]) <= 2  # slow start
    assert peak == 6


async def test_maxproc_caps_a_transport(queue: Queue) -> None:
    running = peak = 0

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1
        return await deliver_ok(request)

    master = "smtp unix - - n - 2 smtp\n"
    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent})
    h.qm = QueueManager(
        from_mapping({}, master_cf=master), queue, resolve, {"smtp": agent},
        MailLog(hostname="h", stream=h.out), notifier=h.notifier,
        clock=h.time.clock, sleep=h.time.sleep,
    )  # fmt: skip
    for i in range(20):
        await queue.enqueue(new((f"u@d{i}.example",)))
    h.start()
    await h.until(lambda: _empty(h), real_seconds=8)
    await h.stop()
    assert peak == 2


async def test_dead_destination_does_not_hold_up_a_live_one(queue: Queue) -> None:
    time = FakeTime(scale=100.0)
    dead_calls = 0
    live_done: list[float] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        nonlocal dead_calls
        if request.nexthop == "dead.example":
            dead_calls += 1
            await time.sleep(30)  # a connect timeout
            return outcome(request, DEFERRED, "4.4.1", "connect to dead.example: timed out")
        live_done.append(time.clock())
        return await deliver_ok(request)

    h = Harness(queue, time, {}, {"smtp": agent})
    dead = [await queue.enqueue(new(("u@dead.example",))) for _ in range(20)]
    live = [await queue.enqueue(new(("u@live.example",))) for _ in range(20)]
    start = time.clock()
    h.start()
    await h.until(lambda: _all_gone(queue, live), real_seconds=5)
    await h.until(lambda: _all_state(queue, dead, Q_DEFERRED), real_seconds=5)
    await h.stop()
    # all live mail went out while the dead destination's deliveries were still hanging
    assert len(live_done) == 20 and max(live_done) - start < 30
    # the destination died after the first cohort: the rest was deferred without trying
    assert dead_calls <= 5
    suspended = [line for line in h.lines()
                 if "status=deferred (delivery temporarily suspended: connect to" in line]
    assert len(suspended) == 20 - dead_calls


async def _all_gone(queue: Queue, ids: list[str]) -> bool:
    return all([await queue.get(qid) is None for qid in ids])


async def _all_state(queue: Queue, ids: list[str], state: str) -> bool:
    return all([await _state_is(queue, qid, state) for qid in ids])


async def test_agent_crash_defers_and_bounce_outcome_bounces(queue: Queue) -> None:
    async def agent(request: DeliveryRequest) -> DeliveryResult:
        if request.nexthop == "boom.example":
            raise RuntimeError("agent bug")
        return outcome(request, BOUNCED, "5.1.1", "550 5.1.1 no such user", "mx[192.0.2.1]:25")

    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent})
    boom = await queue.enqueue(new(("a@boom.example",)))
    bad = await queue.enqueue(new(("b@bad.example",)))
    h.start()
    await h.until(lambda: _state_is(queue, boom, Q_DEFERRED))
    await h.until(lambda: _gone(queue, bad))
    await h.stop()
    msg = await queue.get(boom)
    assert msg is not None
    assert (msg.recipients[0].dsn_status, msg.recipients[0].reason) == (
        "4.3.0", "unknown mail transport error")
    assert h.notifier.notices.bounced == [(bad, (0,))]


async def test_crash_mid_way_leaves_consistent_rows(queue: Queue, tmp_path: Path) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        seen.extend(r.seq for r in request.recipients)
        if request.nexthop == "slow.example":
            await gate.wait()  # never set: in flight when the "crash" happens
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent})
    qid = await queue.enqueue(new(("a@fast.example", "b@slow.example", "c@fast.example")))
    h.start()
    await h.until(lambda: _done_count(queue, qid, 2))
    assert h.task is not None
    h.task.cancel()  # like SIGKILL for the scheduler: no orderly stop
    with pytest.raises(asyncio.CancelledError):
        await h.task
    await queue.close()
    reopened = await Queue.open(tmp_path / "q", clock=lambda: START)
    try:
        assert reopened.recovery is not None and reopened.recovery.active_to_incoming == 1
        msg = await reopened.get(qid)
        assert msg is not None and msg.state == INCOMING
        assert [(r.status, r.done) for r in msg.recipients] == [
            ("sent", True), ("deferred", False), ("sent", True)]
        seen.clear()
        gate.set()
        h2 = Harness(reopened, FakeTime(1.0), {}, {"smtp": agent})
        h2.start()
        await h2.until(lambda: _gone(reopened, qid))
        await h2.stop()
        assert seen == [1]  # only the recipient not recorded as done is tried again
    finally:
        await reopened.close()


async def _done_count(queue: Queue, qid: str, n: int) -> bool:
    msg = await queue.get(qid)
    return msg is not None and sum(r.done for r in msg.recipients) >= n


async def test_stop_records_in_flight_as_deferred(queue: Queue) -> None:
    started = asyncio.Event()

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    h = Harness(queue, FakeTime(100.0), {}, {"smtp": agent}, grace=5.0)
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await asyncio.wait_for(started.wait(), 2)
    await h.stop()
    msg = await queue.get(qid)
    assert msg is not None and msg.state == INCOMING
    r = msg.recipients[0]
    assert (r.status, r.dsn_status, r.reason, r.done) == (
        "deferred", "4.3.0", "mail system shutdown", False)
    assert any(line.endswith("dsn=4.3.0, status=deferred (mail system shutdown)")
               for line in h.lines())


async def test_stop_lets_quick_deliveries_finish(queue: Queue) -> None:
    started = asyncio.Event()

    async def agent(request: DeliveryRequest) -> DeliveryResult:
        started.set()
        await asyncio.sleep(0.01)
        return await deliver_ok(request)

    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent}, grace=5.0)
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await asyncio.wait_for(started.wait(), 2)
    await h.stop()
    assert await queue.get(qid) is None


async def test_soft_bounce_keeps_permanent_failures_queued(queue: Queue) -> None:
    async def agent(request: DeliveryRequest) -> DeliveryResult:
        return outcome(request, BOUNCED, "5.1.1", "550 5.1.1 no such user", "mx[192.0.2.1]:25")

    h = Harness(queue, FakeTime(1.0), {"soft_bounce": "yes"}, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example",)))
    h.start()
    await h.until(lambda: _state_is(queue, qid, Q_DEFERRED))
    await h.stop()
    msg = await queue.get(qid)
    assert msg is not None
    r = msg.recipients[0]
    assert (r.status, r.dsn_status, r.done) == ("deferred", "4.1.1", False)
    assert h.notifier.notices.bounced == []
    assert any(line.endswith("dsn=4.1.1, status=SOFTBOUNCE (550 5.1.1 no such user)")
               for line in h.lines())


async def test_success_notice_carries_the_dsn_action(queue: Queue) -> None:
    async def agent(request: DeliveryRequest) -> DeliveryResult:
        return DeliveryResult(request.queue_id, tuple(
            RecipientResult(r.seq, SENT, "2.0.0", "250 Ok", "mx[192.0.2.1]:25", "relayed")
            for r in request.recipients))

    h = Harness(queue, FakeTime(1.0), {}, {"smtp": agent})
    qid = await queue.enqueue(new(("a@a.example", "b@a.example"), notify="SUCCESS,FAILURE"))
    h.start()
    await h.until(lambda: _gone(queue, qid))
    await h.stop()
    assert h.notifier.notices.succeeded == [(qid, (0, 1))]
    assert h.notifier.actions == {0: "relayed", 1: "relayed"}
