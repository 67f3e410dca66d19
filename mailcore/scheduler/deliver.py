"""Running one delivery and recording outcomes (the queue manager's delivery side).

Owns what happens to one dispatched entry: the agent call, filling in outcomes the agent
left out, soft_bounce, committing and logging outcomes, feeding the destination's window,
and deferring the waiting entries of a destination that just died.

Must not: choose what to deliver next or start tasks (qmgr.py dispatches), or decide what
happens to a message after its last recipient (finish.py). The functions work on the
QueueManager's state, which is private to this package.

Invariants:
- Outcomes are committed (``Queue.record_results``) before they are logged, counted, fed
  back into a window or acted on; an outcome the queue cannot take releases the message
  (recovery at the next start returns it to incoming).
- A delivery starts only while its message is still the one in the active set.
- Every dispatched entry gives back its destination and transport process slot exactly once.
Parameters read: soft_bounce (through QueueManager.soft_bounce).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mailcore.bounce.policy import apply_soft_bounce
from mailcore.model import DEFERRED as R_DEFERRED
from mailcore.model import DeliveryRequest, DeliveryResult, RecipientResult
from mailcore.queue import QueueError
from mailcore.scheduler import finish
from mailcore.scheduler.dispatch import ActiveMessage, Destination, Entry, Transport
from mailcore.scheduler.loglines import delivery_line

if TYPE_CHECKING:
    from mailcore.scheduler.qmgr import QueueManager

SERVICE = "qmgr"
SHUTDOWN = ("4.3.0", "mail system shutdown")
CRASH = ("4.3.0", "unknown mail transport error")
SUSPENDED_PREFIX = "delivery temporarily suspended: "


async def deliver(qm: QueueManager, transport: Transport, destination: Destination,
                  entry: Entry) -> None:
    active = entry.active
    message = active.message
    started = qm.clock()
    request = DeliveryRequest(
        queue_id=message.queue_id, sender=message.sender, recipients=entry.recipients,
        transport=transport.name, nexthop=destination.nexthop, size=message.size,
        arrival_time=message.arrival_time, envid=message.envid, ret=message.ret,
        attrs=tuple(sorted(message.attrs.items())),
    )  # fmt: skip
    try:
        if qm._active.get(message.queue_id) is not active:
            return  # withdrawn before this delivery could start: it never starts
        try:
            result = await qm.agents[transport.name](request)
            crashed = False
        except asyncio.CancelledError:
            await _shutdown_entry(qm, transport, entry, started)
            raise
        except Exception as exc:  # an agent bug defers its recipients, like a crash
            qm.log.warning(SERVICE, f"transport {transport.name} failure: {exc!r}")
            result = DeliveryResult(message.queue_id, ())
            crashed = True
        results, words = soften(complete(entry, result, CRASH), qm.soft_bounce)
        active.actions.update((r.seq, r.action) for r in results if r.action)
        recorded = await record_or_drop(qm, active, transport.name, results, started,
                                        result, words)
    finally:
        destination.busy -= 1
        transport.busy -= 1
    if not recorded:
        return
    await _feedback(qm, transport, destination, results, crashed)
    active.pending -= 1
    if active.pending == 0 and qm._active.get(active.queue_id) is active:
        await qm._finish(active)
    qm._event.set()


def soften(results: list[RecipientResult], soft_bounce: bool
           ) -> tuple[list[RecipientResult], dict[int, str]]:
    """soft_bounce: permanent failures are kept as deferrals (logged SOFTBOUNCE)."""
    softened = [apply_soft_bounce(r, soft_bounce) for r in results]
    return [r for r, _ in softened], {r.seq: word for r, word in softened}


async def record_or_drop(qm: QueueManager, active: ActiveMessage, transport_name: str,
                         results: list[RecipientResult], started: float,
                         result: DeliveryResult | None = None,
                         words: Mapping[int, str] | None = None) -> bool:
    """Record outcomes; if the queue cannot take them, let go of the message (it stays
    active on disk, and recovery at the next start returns it to incoming)."""
    try:
        await record(qm, active, transport_name, results, started, result, words)
    except (QueueError, KeyError) as exc:
        qm.log.error(SERVICE, f"{active.queue_id}: cannot record delivery status: {exc}")
        qm._release(active.queue_id)
        qm._event.set()
        return False
    return True


async def _shutdown_entry(qm: QueueManager, transport: Transport, entry: Entry,
                          started: float) -> None:
    results = [RecipientResult(r.seq, R_DEFERRED, *SHUTDOWN) for r in entry.recipients]
    with contextlib.suppress(QueueError, KeyError):
        await record(qm, entry.active, transport.name, results, started)


async def _feedback(qm: QueueManager, transport: Transport, destination: Destination,
                    results: list[RecipientResult], crashed: bool) -> None:
    window = destination.window
    now = qm.clock()
    failure = site_failure(results, crashed)
    if failure is None:
        window.positive(destination.busy)
    elif window.negative(now, failure[0], SUSPENDED_PREFIX + failure[1]):
        await _defer_todo(qm, destination)
    window.delivery_done(now)


async def _defer_todo(qm: QueueManager, destination: Destination) -> None:
    """A destination just died: its waiting entries are deferred without a connection."""
    assert destination.window.dead_reason is not None
    dsn, reason = destination.window.dead_reason
    while destination.todo:
        entry = destination.todo.popleft()
        results = [RecipientResult(r.seq, R_DEFERRED, dsn, reason) for r in entry.recipients]
        active = entry.active
        if qm._active.get(active.queue_id) is not active:
            continue  # withdrawn meanwhile; its row may be gone
        if not await record_or_drop(qm, active, destination.transport, results, qm.clock()):
            continue
        active.pending -= 1
        if active.pending == 0 and qm._active.get(active.queue_id) is active:
            await qm._finish(active)


async def record(qm: QueueManager, active: ActiveMessage, transport_name: str,
                 results: list[RecipientResult], started: float,
                 result: DeliveryResult | None = None,
                 words: Mapping[int, str] | None = None) -> None:
    """Commit outcomes, then log them: the log never claims what the queue lacks."""
    message = active.message
    await qm.queue.record_results(message.queue_id, results)
    if qm.results_hook is not None:
        qm.results_hook(transport_name, results)
    now = qm.clock()
    by_seq = {r.seq: r for r in message.recipients}
    delays = finish.split_delays(message.arrival_time, active.entered, started, result)
    for outcome in results:
        rcpt = by_seq[outcome.seq]
        status = (words or {}).get(outcome.seq, outcome.status)
        # An expanded recipient (local aliases, .forward) gets a line per destination, with
        # the queued recipient as orig_to, as Postfix's local(8) logs it.
        lines = [(d.address, rcpt.orig_rcpt or rcpt.address, d.dsn,
                  status if d.status == outcome.status else d.status, d.reason)
                 for d in outcome.destinations] or [
            (rcpt.address, rcpt.orig_rcpt, outcome.dsn, status, outcome.reason)]
        for address, orig, dsn, line_status, reason in lines:
            qm.log.info(transport_name, delivery_line(
                message.queue_id, address, orig, relay=outcome.relay,
                delay=now - message.arrival_time, delays=delays, dsn=dsn,
                status=line_status, reason=reason,
            ))  # fmt: skip


def site_failure(results: list[RecipientResult], crashed: bool) -> tuple[str, str] | None:
    """(dsn, reason) when a delivery failed at the destination rather than per recipient.

    Postfix's agents say so explicitly; DeliveryResult has no such field, so mailcore reads
    it from the outcome: the agent crashed, or every recipient was deferred with a 4.4.x
    (network or routing) status — what an agent reports when it could not connect, lost the
    session or could not look up the destination."""
    if crashed:
        return CRASH
    if results and all(r.status == R_DEFERRED and r.dsn.startswith("4.4.") for r in results):
        return (results[0].dsn, results[0].reason)
    return None


def complete(entry: Entry, result: DeliveryResult, missing: tuple[str, str]
             ) -> list[RecipientResult]:
    """The agent's outcome for exactly the entry's recipients; one it forgot is deferred."""
    wanted = {ref.seq for ref in entry.recipients}
    got = {r.seq: r for r in result.recipients if r.seq in wanted}
    return [got.get(seq) or RecipientResult(seq, R_DEFERRED, *missing)
            for seq in sorted(wanted)]
