"""Flushing: delivering deferred mail now (postqueue -f, postqueue -i, ETRN, sendmail -qR).

Owns what a flush does to the queue and to the scheduler: which deferred messages move to
incoming, which of them skip defer_transports, and which destination windows are revived.

Must not: deliver (it only wakes the queue manager) or change mail in any state other than
deferred. The functions work on the QueueManager's state, which is private to this package.

Invariants: a message is moved only from deferred to incoming, so a held, active or deleted
message is never touched; a dead destination is revived without dropping deliveries in flight.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from mailcore.queue import DEFERRED, INCOMING, QueuedMessage

if TYPE_CHECKING:
    from mailcore.scheduler.qmgr import QueueManager

PAGE = 100


def flush(qm: QueueManager) -> None:
    qm._deferred.start(flush=True)
    qm._incoming.start(flush=True)
    for transport in qm._transports.values():
        for destination in transport.destinations.values():
            destination.window.revive(destination.busy)
    qm._event.set()


async def flush_id(qm: QueueManager, queue_id: str) -> bool:
    moved = await qm.queue.transition(queue_id, DEFERRED, INCOMING, next_attempt=qm.clock())
    if moved:
        qm._flushed_ids.add(queue_id)
        qm.wakeup()
    return moved


async def flush_site(qm: QueueManager, site: str) -> int:
    site = site.lower().rstrip(".")
    count = 0
    after = ""
    while True:
        page = await qm.queue.page(DEFERRED, after, PAGE)
        if not page:
            break
        after = page[-1].queue_id
        for message in page:
            if await _matches_site(qm, message, site) and await qm.flush_id(message.queue_id):
                count += 1
    for transport in qm._transports.values():
        for (_, nexthop), destination in transport.destinations.items():
            if nexthop_host(nexthop) == site:
                destination.window.revive(destination.busy)
    qm._event.set()
    return count


async def _matches_site(qm: QueueManager, message: QueuedMessage, site: str) -> bool:
    for rcpt in message.recipients:
        if rcpt.done:
            continue
        if rcpt.address.rpartition("@")[2].lower().rstrip(".") == site:
            return True
        with contextlib.suppress(Exception):
            route = await qm.resolver(message, rcpt.address)
            if nexthop_host(route.nexthop) == site:
                return True
    return False


def nexthop_host(nexthop: str) -> str:
    host = nexthop.lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")
