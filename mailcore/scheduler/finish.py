"""What the queue manager does once every recipient of a message has been tried (Postfix's
qmgr_active_done): notices, expiry, delay warning, then defer with backoff or remove.

Owns that sequence and the delays=a/b/c/d split.

Must not: deliver, or decide what a notice looks like (the notifier does).

Invariants: each step is committed before the next acts on it — expired recipients are
recorded bounced before the notifier hears of them; a notice is flagged sent only after the
notifier returned; the message is removed only when nothing is left to try or to notify.
A notifier failure keeps the message deferred, so the notice is retried with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mailcore.model import BOUNCED, DELEGATED, SENT, Delays, DeliveryResult, RecipientResult
from mailcore.queue import DEFERRED, QueuedMessage, QueuedRecipient
from mailcore.scheduler.loglines import expired_line, removed_line
from mailcore.scheduler.policy import backoff, delay_warning_due, expired, queue_lifetime

if TYPE_CHECKING:
    from mailcore.scheduler.dispatch import ActiveMessage
    from mailcore.scheduler.qmgr import QueueManager

SERVICE = "qmgr"


def split_delays(arrival: float, entered: float, started: float,
                 result: DeliveryResult | None) -> Delays:
    """Postfix's a/b/c/d: before the active queue, waiting in it, connection setup,
    transmission; the agent's own before/in-queue figures are added when it reports any."""
    agent = result.delays if result is not None else Delays()
    return Delays(
        before_queue=max(0.0, entered - arrival) + agent.before_queue,
        in_queue=max(0.0, started - entered) + agent.in_queue,
        setup=agent.setup,
        transmission=agent.transmission,
    )


def wants_success_notice(rcpt: QueuedRecipient) -> bool:
    return "SUCCESS" in (rcpt.notify or "").upper().split(",")


async def finish_message(qm: QueueManager, active: ActiveMessage) -> None:
    queue_id = active.queue_id
    message = await qm.queue.get(queue_id)
    if message is None:
        return  # deleted by an administrator meanwhile
    now = qm.clock()
    settings = qm.settings
    pending = [r for r in message.recipients if not r.done]
    lifetime = queue_lifetime(message.sender, settings.maximal_queue_lifetime,
                              settings.bounce_queue_lifetime)
    if pending and expired(now, message.create_time, lifetime):
        qm.log.info(SERVICE, expired_line(queue_id, message.sender))
        await qm.queue.record_results(queue_id, [
            RecipientResult(r.seq, BOUNCED, r.dsn_status or "4.0.0",
                            r.reason or "message expired", r.relay or "none")
            for r in pending
        ])  # fmt: skip
        message = await qm.queue.get(queue_id)
        if message is None:
            return
        pending = []
    notified, complete = await _notices(qm, message, active.actions)
    warned = message.warned_delay
    if pending and delay_warning_due(now, message.arrival_time, settings.delay_warning_time,
                                     warned):
        warned = await _notify(qm, "delayed", message, tuple(pending))
    if not pending and complete:
        await qm.queue.delete(queue_id)
        qm.log.info(SERVICE, removed_line(queue_id))
        return
    wait = backoff(now - message.create_time, settings.minimal_backoff,
                   settings.maximal_backoff)
    await qm.queue.record_results(
        queue_id, (), state=DEFERRED, next_attempt=now + wait, last_attempt=active.entered,
        attempt_count=message.attempt_count + 1, warned_delay=warned, notified=notified,
    )  # fmt: skip


async def _notices(qm: QueueManager, message: QueuedMessage, actions: Mapping[int, str]
                   ) -> tuple[list[int], bool]:
    """Hand final outcomes not yet notified to the notifier; returns the seqs it took and
    whether every notice went out."""
    waiting = [r for r in message.recipients if r.done and not r.notified]
    bounced = tuple(r for r in waiting if r.status == BOUNCED)
    sent = tuple(r for r in waiting if r.status == SENT and wants_success_notice(r)
                 and actions.get(r.seq) != DELEGATED)
    notified: list[int] = []
    complete = True
    for kind, group in (("bounced", bounced), ("succeeded", sent)):
        if not group:
            continue
        extra = {r.seq: actions[r.seq] for r in group if r.seq in actions}
        if await _notify(qm, kind, message, group, extra):
            notified += [r.seq for r in group]
        else:
            complete = False
    if notified:
        # Committed now: a later failure must not send the same notice twice.
        await qm.queue.record_results(message.queue_id, (), notified=notified)
    return notified, complete


async def _notify(qm: QueueManager, kind: str, message: QueuedMessage,
                  recipients: tuple[QueuedRecipient, ...],
                  actions: Mapping[int, str] | None = None) -> bool:
    try:
        if actions:
            await qm.notifier.succeeded(message, recipients, actions)
        else:
            await getattr(qm.notifier, kind)(message, recipients)
    except Exception as exc:  # a failed notice defers the message; it is tried again later
        qm.log.warning(SERVICE, f"{message.queue_id}: {kind} notice failed: {exc}")
        return False
    return True
