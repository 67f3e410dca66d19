"""The queue manager (Postfix's qmgr): from the queue to the delivery agents and back.

Owns the active set (messages being delivered, bounded by qmgr_message_active_limit and
qmgr_message_recipient_limit), feeding it from the incoming and deferred states alternately,
recipient grouping per destination, per-destination windows and per-transport process
limits, and what happens to a message once all its recipients have been tried. The loop and
the wiring are here; running one delivery is deliver.py's, flushing flush.py's,
administration admin.py's, and the end of a message finish.py's.

Must not: speak any protocol, rewrite addresses or build notices; the resolver, the delivery
agents and the notifier are injected.

Invariants:
- Every outcome is committed (``Queue.record_results``) before it is logged, fed back into a
  window or acted on; a message is claimed (state active) before anything is delivered.
- A recipient is done only once sent or bounced; a message is removed only when every
  recipient is done and every notice it needs has been handed to the notifier.
- After a crash, recovery returns active mail to incoming; recipients not recorded are tried
  again (duplicates only for deliveries in flight at the crash).
- Administration (delete/hold/release/requeue, see admin.py and queue/admin.py) never races
  a delivery: a message being worked on is first withdrawn from the active set (its waiting
  entries dropped, no new delivery of it may start), then its deliveries in flight are
  awaited and their outcomes recorded, and only then is the row changed. A delivery starts
  only while its message is still the one in the active set, so nothing is delivered after
  ``delete`` returned.
Parameters: see settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Iterable, Mapping

from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.model import DEFERRED as R_DEFERRED
from mailcore.model import RecipientRef, RecipientResult
from mailcore.queue import (
    ACTIVE,
    DEFERRED,
    INCOMING,
    Queue,
    QueuedMessage,
    QueuedRecipient,
    QueueError,
)
from mailcore.scheduler import admin, deliver, finish, flush
from mailcore.scheduler.deliver import CRASH, SHUTDOWN, SUSPENDED_PREFIX, site_failure
from mailcore.scheduler.dispatch import ActiveMessage, Transport
from mailcore.scheduler.flush import PAGE  # one page size for scans and flushes
from mailcore.scheduler.ports import (
    Agent,
    Clock,
    DestinationLoad,
    Notifier,
    Resolver,
    ResultsHook,
    Sleep,
)
from mailcore.scheduler.scan import Scan
from mailcore.scheduler.settings import scheduler_settings, transport_settings

__all__ = [
    "CRASH", "DEFERRED_TRANSPORT", "NO_TRANSPORT", "PAGE", "RESOLVE_FAILED", "SERVICE",
    "SHUTDOWN", "SUSPENDED_PREFIX", "Agent", "Clock", "DestinationLoad", "Notifier",
    "QueueManager", "Resolver", "ResultsHook", "Sleep", "site_failure",
]  # fmt: skip

SERVICE = "qmgr"
NO_TRANSPORT = ("4.3.0", "mail transport unavailable")
RESOLVE_FAILED = ("4.3.0", "address resolver failure")
DEFERRED_TRANSPORT = ("4.3.2", "deferred transport")


class QueueManager:
    def __init__(
        self,
        config: Config,
        queue: Queue,
        resolver: Resolver,
        agents: Mapping[str, Agent],
        log: MailLog,
        *,
        notifier: Notifier,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        shutdown_grace: float = 10.0,
        results_hook: ResultsHook | None = None,
    ) -> None:
        self.config = config
        self.results_hook = results_hook
        self.queue = queue
        self.resolver = resolver
        self.agents = agents
        self.log = log
        self.notifier = notifier
        self.clock = clock
        self.sleep = sleep
        self.shutdown_grace = shutdown_grace  # mailcore's own: how long stop() lets runs end
        self.settings = scheduler_settings(config)
        self.soft_bounce = config.get_bool("soft_bounce")
        self._transports: dict[str, Transport] = {}
        self._active: dict[str, ActiveMessage] = {}
        self._active_recipients = 0
        self._incoming = Scan(queue, INCOMING, PAGE)
        self._deferred = Scan(queue, DEFERRED, PAGE)
        self._prefer_incoming = True
        self._next_deferred_scan = -math.inf
        self._flushed_ids: set[str] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._deliveries: dict[str, set[asyncio.Task[None]]] = {}  # in flight, by queue ID
        self._event = asyncio.Event()
        self._stopping = False
        self._group: asyncio.TaskGroup | None = None

    # --- requests from outside ---------------------------------------------------------
    def wakeup(self) -> None:
        """New mail was enqueued (pickup, smtpd, bounces): scan incoming."""
        self._incoming.start()
        self._event.set()

    def flush(self) -> None:
        """Everything now: deferred mail regardless of its time, defer_transports overridden
        for it, dead destinations given another chance (postqueue -f)."""
        flush.flush(self)

    async def flush_id(self, queue_id: str) -> bool:
        """Deliver one deferred message now (postqueue -i); False if it is not deferred."""
        return await flush.flush_id(self, queue_id)

    async def flush_site(self, site: str) -> int:
        """Deferred mail with a pending recipient in ``site`` or routed to it (ETRN,
        sendmail -qR). Returns how many messages were moved to incoming."""
        return await flush.flush_site(self, site)

    def reconfigure(self, config: Config, resolver: Resolver, agents: Mapping[str, Agent],
                    notifier: Notifier, shutdown_grace: float) -> None:
        """Use a reloaded configuration for every delivery started from now on; deliveries in
        flight finish with the agent they started with. Destinations keep their windows."""
        self.config, self.resolver, self.agents = config, resolver, agents
        self.notifier, self.shutdown_grace = notifier, shutdown_grace
        self.settings = scheduler_settings(config)
        self.soft_bounce = config.get_bool("soft_bounce")
        for name, transport in self._transports.items():
            warnings: list[str] = []
            transport.settings = transport_settings(config, name, warnings)
            for warning in warnings:
                self.log.warning(SERVICE, warning)
        self.wakeup()

    def destination_loads(self) -> tuple[DestinationLoad, ...]:
        return tuple(
            DestinationLoad(transport.name, destination.nexthop, destination.busy,
                            destination.window.window, len(destination.todo))
            for transport in self._transports.values()
            for destination in transport.destinations.values()
        )

    def inflight(self) -> frozenset[asyncio.Task[None]]:
        """The deliveries running now."""
        return frozenset(self._inflight)

    # --- administration (postsuper, through the control channel) ------------------------
    async def delete(self, ids: Iterable[str] | str, queue: str | None = None
                     ) -> dict[str, list[str]]:
        """postsuper -d: returns once every changed message is gone and none of its
        deliveries runs or can start; ``ids`` is a list of queue IDs or "ALL"."""
        return await admin.delete(self, ids, queue)

    async def hold(self, ids: Iterable[str] | str, queue: str | None = None
                   ) -> dict[str, list[str]]:
        """postsuper -h: deliveries in flight end (and are recorded) first."""
        return await admin.hold(self, ids, queue)

    async def release(self, ids: Iterable[str] | str, queue: str | None = None
                      ) -> dict[str, list[str]]:
        """postsuper -H: hold → deferred (its next attempt time is kept, as Postfix keeps
        the file's time stamp; flush to deliver at once)."""
        return await admin.release(self, ids, queue)

    async def requeue(self, ids: Iterable[str] | str, queue: str | None = None
                      ) -> dict[str, list[str]]:
        """postsuper -r: back to incoming, tried again at once with current routing."""
        return await admin.requeue(self, ids, queue)

    def stop(self) -> None:
        """Stop feeding and dispatching; ``run`` returns once in-flight deliveries ended or,
        after ``shutdown_grace``, were recorded as deferred."""
        self._stopping = True
        self._event.set()

    # --- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        self._incoming.start()
        async with asyncio.TaskGroup() as group:
            self._group = group
            while not self._stopping:
                self._event.clear()
                now = self.clock()
                self._tick(now)
                await self._feed()
                self._dispatch()
                await self._wait(self._deadline())
            await self._drain()

    def _tick(self, now: float) -> None:
        if now >= self._next_deferred_scan:
            self._deferred.start(now)
            self._next_deferred_scan = now + self.settings.queue_run_delay
        for transport in self._transports.values():
            for key, destination in list(transport.destinations.items()):
                destination.window.tick(now, destination.busy)
                if destination.idle:
                    del transport.destinations[key]

    def _deadline(self) -> float:
        deadline = self._next_deferred_scan
        for transport in self._transports.values():
            for destination in transport.destinations.values():
                when = destination.window.deadline()
                if when is not None:
                    deadline = min(deadline, when)
        return deadline

    async def _wait(self, deadline: float) -> None:
        if self._event.is_set():
            return
        waiter = asyncio.ensure_future(self._event.wait())
        sleeper = asyncio.ensure_future(self.sleep(max(0.0, deadline - self.clock())))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()
            await asyncio.gather(waiter, sleeper, return_exceptions=True)

    async def _drain(self) -> None:
        if self._inflight:
            done = asyncio.ensure_future(asyncio.wait(set(self._inflight)))
            grace = asyncio.ensure_future(self.sleep(self.shutdown_grace))
            try:
                await asyncio.wait({done, grace}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                grace.cancel()
                done.cancel()
                await asyncio.gather(done, grace, return_exceptions=True)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight))
        # Mail not yet tried goes back to incoming, as Postfix's active queue does on restart.
        for queue_id in list(self._active):
            self._release(queue_id)
            with contextlib.suppress(QueueError, KeyError):
                await self.queue.transition(queue_id, ACTIVE, INCOMING)

    # --- feeding the active set --------------------------------------------------------
    def _has_room(self) -> bool:
        return (len(self._active) < self.settings.active_limit
                and self._active_recipients < self.settings.recipient_limit)

    async def _feed(self) -> None:
        """Admit messages while there is room, one from incoming and one from deferred in
        turn so that neither starves the other."""
        while self._has_room() and not self._stopping:
            scans = [self._incoming, self._deferred]
            if not self._prefer_incoming:
                scans.reverse()
            self._prefer_incoming = not self._prefer_incoming
            for scan in scans:
                message = await scan.next()
                if message is not None:
                    await self._admit(message, scan.state, scan.flush)
                    break
            else:
                return

    async def _admit(self, message: QueuedMessage, state: str, flush: bool) -> None:
        queue_id = message.queue_id
        if queue_id in self._active:
            return
        try:
            if not await self.queue.transition(queue_id, state, ACTIVE):
                return  # held, deleted or already taken since the page was read
        except (QueueError, KeyError) as exc:
            self.log.error(SERVICE, f"{queue_id}: cannot activate: {exc}")
            return
        flush = flush or queue_id in self._flushed_ids
        self._flushed_ids.discard(queue_id)
        now = self.clock()
        pending = [r for r in message.recipients if not r.done]
        active = ActiveMessage(message, entered=now, flush=flush, recipients=len(pending))
        self._active[queue_id] = active
        self._active_recipients += active.recipients
        groups, refused = await self._route(message, pending, flush)
        if self._active.get(queue_id) is not active:
            return  # withdrawn (deleted or held) while its recipients were being routed
        for (transport_name, nexthop), refs in groups.items():
            transport = self._transport(transport_name)
            destination = transport.destination(nexthop)
            if destination.window.dead_reason is not None:
                dsn, reason = destination.window.dead_reason
                refused += [RecipientResult(ref.seq, R_DEFERRED, dsn, reason) for ref in refs]
                continue
            for entry in transport.entries(active, refs):
                destination.todo.append(entry)
                active.pending += 1
        if refused and not await deliver.record_or_drop(self, active, SERVICE, refused, now):
            return
        if active.pending == 0:
            await self._finish(active)

    async def _route(
        self, message: QueuedMessage, pending: list[QueuedRecipient], flush: bool
    ) -> tuple[dict[tuple[str, str], list[RecipientRef]], list[RecipientResult]]:
        groups: dict[tuple[str, str], list[RecipientRef]] = {}
        refused: list[RecipientResult] = []
        for rcpt in pending:
            try:
                route = await self.resolver(message, rcpt.address)
            except Exception as exc:  # a resolver failure defers; it never loses the message
                self.log.warning(SERVICE, f"{message.queue_id}: resolve {rcpt.address}: {exc}")
                refused.append(RecipientResult(rcpt.seq, R_DEFERRED, *RESOLVE_FAILED))
                continue
            problem = None
            if route.transport not in self.agents:
                problem = NO_TRANSPORT
            elif route.transport in self.settings.defer_transports and not flush:
                problem = DEFERRED_TRANSPORT
            if problem is not None:
                refused.append(RecipientResult(rcpt.seq, R_DEFERRED, *problem))
                continue
            ref = RecipientRef(rcpt.seq, route.recipient, rcpt.orig_rcpt, rcpt.notify, rcpt.orcpt)
            groups.setdefault((route.transport, route.nexthop), []).append(ref)
        return groups, refused

    def _transport(self, name: str) -> Transport:
        transport = self._transports.get(name)
        if transport is None:
            warnings: list[str] = []
            transport = Transport(transport_settings(self.config, name, warnings))
            for warning in warnings:
                self.log.warning(SERVICE, warning)
            self._transports[name] = transport
        return transport

    # --- deliveries --------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._stopping or self._group is None:
            return
        for transport in self._transports.values():
            while transport.has_process():
                selected = transport.select()
                if selected is None:
                    break
                destination, entry = selected
                task = self._group.create_task(
                    deliver.deliver(self, transport, destination, entry))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                queue_id = entry.active.queue_id
                self._deliveries.setdefault(queue_id, set()).add(task)
                task.add_done_callback(functools.partial(self._delivery_ended, queue_id))

    def _delivery_ended(self, queue_id: str, task: asyncio.Task[None]) -> None:
        tasks = self._deliveries.get(queue_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._deliveries[queue_id]

    # --- after the last recipient ------------------------------------------------------
    async def _finish(self, active: ActiveMessage) -> None:
        self._release(active.queue_id)
        try:
            await finish.finish_message(self, active)
        except (QueueError, KeyError) as exc:
            # The queue cannot be written; the message stays active and recovery at the next
            # start hands it back to incoming.
            self.log.error(SERVICE, f"{active.queue_id}: cannot update the queue: {exc}")

    def _release(self, queue_id: str) -> None:
        active = self._active.pop(queue_id, None)
        if active is not None:
            self._active_recipients -= active.recipients
