"""Administration applied by the queue manager (postsuper -d/-h/-H/-r through the control
channel), safely for mail it is delivering.

Owns withdrawing a message from the active set and the order of an administrative change:
withdraw, await deliveries in flight, then change the row. What each action does to a row,
and which states it applies to, is queue/admin.py's.

Must not: deliver, or change a row while a delivery of it may still run or start. The
functions work on the QueueManager's state, which is private to this package.

Invariants: a withdrawn message's waiting entries are dropped and its ``pending`` count is
kept equal to the entries still queued or in flight; a delivery starts only while its
message is still the one in the active set (deliver.py checks), so nothing is delivered
after ``delete`` returned.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailcore.queue import ACTIVE, admin

if TYPE_CHECKING:
    from mailcore.scheduler.qmgr import QueueManager

IdList = Iterable[str] | str


async def delete(qm: QueueManager, ids: IdList, queue: str | None) -> dict[str, list[str]]:
    return (await _administer(qm, admin.DELETE, ids, queue)).as_dict()


async def hold(qm: QueueManager, ids: IdList, queue: str | None) -> dict[str, list[str]]:
    return (await _administer(qm, admin.HOLD_ACTION, ids, queue)).as_dict()


async def release(qm: QueueManager, ids: IdList, queue: str | None) -> dict[str, list[str]]:
    return (await _administer(qm, admin.RELEASE, ids, queue)).as_dict()


async def requeue(qm: QueueManager, ids: IdList, queue: str | None) -> dict[str, list[str]]:
    result = await _administer(qm, admin.REQUEUE, ids, queue)
    if result.changed:
        qm.wakeup()
    return result.as_dict()


async def _administer(qm: QueueManager, action: str, ids: IdList, queue: str | None
                      ) -> admin.AdminResult:
    states = admin.source_states(action, queue)
    changed: list[str] = []
    missing: list[str] = []
    async for batch in admin.batches(qm.queue, ids, states):
        idle = [queue_id for queue_id in batch if not busy(qm, queue_id)]
        hit = set(await qm.queue.administer(action, idle, states - {ACTIVE}))
        for queue_id in batch:
            if queue_id in hit or await _administer_busy(qm, action, queue_id, states):
                hit.discard(queue_id)
                changed.append(queue_id)
                qm.log.info("postsuper", f"{queue_id}: {admin.LOGGED[action]}")
            else:
                missing.append(queue_id)
    return admin.AdminResult(tuple(changed), tuple(missing))


async def _administer_busy(qm: QueueManager, action: str, queue_id: str,
                           states: frozenset[str]) -> bool:
    """One message that may be in the active set: withdraw it, let its deliveries end,
    then change the row if it is still in one of ``states``. A few rounds, because it
    may be claimed by the feed between the state read and the write."""
    for _ in range(4):
        if busy(qm, queue_id):
            if ACTIVE not in states:
                return False
            await withdraw(qm, queue_id)
        state = await qm.queue.state_of(queue_id)
        if state is None or state not in states:
            return False
        if await qm.queue.administer(action, [queue_id], (state,)):
            return True
    return False


def busy(qm: QueueManager, queue_id: str) -> bool:
    return queue_id in qm._active or queue_id in qm._deliveries


async def withdraw(qm: QueueManager, queue_id: str) -> None:
    """Take a message out of the active set, drop its waiting entries, and wait until
    its deliveries in flight have ended (their outcomes are recorded as usual)."""
    active = qm._active.get(queue_id)
    if active is not None:
        qm._release(queue_id)
        for transport in qm._transports.values():
            for destination in transport.destinations.values():
                kept = deque(e for e in destination.todo if e.active is not active)
                active.pending -= len(destination.todo) - len(kept)
                destination.todo = kept
    tasks = qm._deliveries.get(queue_id)
    if tasks:
        await asyncio.wait(set(tasks))
    qm._event.set()
