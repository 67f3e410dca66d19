"""The queue manager (Postfix's qmgr): from the queue to the delivery agents and back.

Owns the active set (messages being delivered, bounded by qmgr_message_active_limit and
qmgr_message_recipient_limit), feeding it from the incoming and deferred states alternately,
recipient grouping per destination, per-destination windows and per-transport process
limits, and what happens to a message once all its recipients have been tried.

Must not: speak any protocol, rewrite addresses or build notices; the resolver, the delivery
agents and the notifier are injected.

Invariants:
- Every outcome is committed (``Queue.record_results``) before it is logged, fed back into a
  window or acted on; a message is claimed (state active) before anything is delivered.
- A recipient is done only once sent or bounced; a message is removed only when every
  recipient is done and every notice it needs has been handed to the notifier.
- After a crash, recovery returns active mail to incoming; recipients not recorded are tried
  again (duplicates only for deliveries in flight at the crash).
- Administration (delete/hold/release/requeue, see queue/admin.py) never races a delivery: a
  message being worked on is first withdrawn from the active set (its waiting entries
  dropped, no new delivery of it may start), then its deliveries in flight are awaited and
  their outcomes recorded, and only then is the row changed. A delivery starts only while
  its message is still the one in the active set, so nothing is delivered after ``delete``
  returned.
Parameters: see settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailcore.bounce.policy import apply_soft_bounce
from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.model import DEFERRED as R_DEFERRED
from mailcore.model import DeliveryRequest, DeliveryResult, RecipientRef, RecipientResult, Route
from mailcore.queue import (
    ACTIVE,
    DEFERRED,
    INCOMING,
    Queue,
    QueuedMessage,
    QueuedRecipient,
    QueueError,
    admin,
)
from mailcore.scheduler import finish
from mailcore.scheduler.dispatch import ActiveMessage, Destination, Entry, Transport
from mailcore.scheduler.loglines import delivery_line
from mailcore.scheduler.scan import Scan
from mailcore.scheduler.settings import scheduler_settings, transport_settings

# (the message, one of its recipients) -> where that recipient goes; the message carries the
# sender and attributes such as content_filter that decide the route.
Resolver = Callable[[QueuedMessage, str], Awaitable[Route]]
Agent = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Told (transport or "qmgr", outcomes) after outcomes are committed: the metrics counters.
ResultsHook = Callable[[str, Sequence[RecipientResult]], None]

SERVICE = "qmgr"
SHUTDOWN = ("4.3.0", "mail system shutdown")
CRASH = ("4.3.0", "unknown mail transport error")
NO_TRANSPORT = ("4.3.0", "mail transport unavailable")
RESOLVE_FAILED = ("4.3.0", "address resolver failure")
DEFERRED_TRANSPORT = ("4.3.2", "deferred transport")
SUSPENDED_PREFIX = "delivery temporarily suspended: "
PAGE = 100


class Notifier(Protocol):
    """The bounce service as qmgr sees it; each call returns once the notice is queued."""

    async def bounced(self, message: QueuedMessage,
                      recipients: tuple[QueuedRecipient, ...]) -> None: ...

    async def delayed(self, message: QueuedMessage,
                      recipients: tuple[QueuedRecipient, ...]) -> None: ...

    async def succeeded(self, message: QueuedMessage, recipients: tuple[QueuedRecipient, ...],
                        actions: Mapping[int, str] | None = None) -> None:
        """``actions``: DSN action by recipient seq ("relayed", "expanded") when known."""


@dataclass(frozen=True)
class DestinationLoad:
    """One destination as the scheduler sees it now (a read-only snapshot)."""

    transport: str
    nexthop: str
    busy: int  # deliveries in flight
    window: int  # current concurrency window
    waiting: int  # entries queued for it


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
        self._deferred.start(flush=True)
        self._incoming.start(flush=True)
        for transport in self._transports.values():
            for destination in transport.destinations.values():
                destination.window.revive(destination.busy)
        self._event.set()

    async def flush_id(self, queue_id: str) -> bool:
        """Deliver one deferred message now (postqueue -i); False if it is not deferred."""
        moved = await self.queue.transition(queue_id, DEFERRED, INCOMING,
                                            next_attempt=self.clock())
        if moved:
            self._flushed_ids.add(queue_id)
            self.wakeup()
        return moved

    async def flush_site(self, site: str) -> int:
        """Deferred mail with a pending recipient in ``site`` or routed to it (ETRN,
        sendmail -qR). Returns how many messages were moved to incoming."""
        site = site.lower().rstrip(".")
        count = 0
        after = ""
        while True:
            page = await self.queue.page(DEFERRED, after, PAGE)
            if not page:
                break
            after = page[-1].queue_id
            for message in page:
                if await self._matches_site(message, site) and await self.flush_id(
                    message.queue_id
                ):
                    count += 1
        for transport in self._transports.values():
            for (_, nexthop), destination in transport.destinations.items():
                if _nexthop_host(nexthop) == site:
                    destination.window.revive(destination.busy)
        self._event.set()
        return count

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
        return (await self._administer(admin.DELETE, ids, queue)).as_dict()

    async def hold(self, ids: Iterable[str] | str, queue: str | None = None
                   ) -> dict[str, list[str]]:
        """postsuper -h: deliveries in flight end (and are recorded) first."""
        return (await self._administer(admin.HOLD_ACTION, ids, queue)).as_dict()

    async def release(self, ids: Iterable[str] | str, queue: str | None = None
                      ) -> dict[str, list[str]]:
        """postsuper -H: hold → deferred (its next attempt time is kept, as Postfix keeps
        the file's time stamp; flush to deliver at once)."""
        return (await self._administer(admin.RELEASE, ids, queue)).as_dict()

    async def requeue(self, ids: Iterable[str] | str, queue: str | None = None
                      ) -> dict[str, list[str]]:
        """postsuper -r: back to incoming, tried again at once with current routing."""
        result = await self._administer(admin.REQUEUE, ids, queue)
        if result.changed:
            self.wakeup()
        return result.as_dict()

    async def _administer(self, action: str, ids: Iterable[str] | str, queue: str | None
                          ) -> admin.AdminResult:
        states = admin.source_states(action, queue)
        changed: list[str] = []
        missing: list[str] = []
        async for batch in admin.batches(self.queue, ids, states):
            idle = [queue_id for queue_id in batch if not self._busy(queue_id)]
            hit = set(await self.queue.administer(action, idle, states - {ACTIVE}))
            for queue_id in batch:
                if queue_id in hit or await self._administer_busy(action, queue_id, states):
                    hit.discard(queue_id)
                    changed.append(queue_id)
                    self.log.info("postsuper", f"{queue_id}: {admin.LOGGED[action]}")
                else:
                    missing.append(queue_id)
        return admin.AdminResult(tuple(changed), tuple(missing))

    async def _administer_busy(self, action: str, queue_id: str, states: frozenset[str]
                               ) -> bool:
        """One message that may be in the active set: withdraw it, let its deliveries end,
        then change the row if it is still in one of ``states``. A few rounds, because it
        may be claimed by the feed between the state read and the write."""
        for _ in range(4):
            if self._busy(queue_id):
                if ACTIVE not in states:
                    return False
                await self._withdraw(queue_id)
            state = await self.queue.state_of(queue_id)
            if state is None or state not in states:
                return False
            if await self.queue.administer(action, [queue_id], (state,)):
                return True
        return False

    def _busy(self, queue_id: str) -> bool:
        return queue_id in self._active or queue_id in self._deliveries

    async def _withdraw(self, queue_id: str) -> None:
        """Take a message out of the active set, drop its waiting entries, and wait until
        its deliveries in flight have ended (their outcomes are recorded as usual)."""
        active = self._active.get(queue_id)
        if active is not None:
            self._release(queue_id)
            for transport in self._transports.values():
                for destination in transport.destinations.values():
                    kept = deque(e for e in destination.todo if e.active is not active)
                    active.pending -= len(destination.todo) - len(kept)
                    destination.todo = kept
        tasks = self._deliveries.get(queue_id)
        if tasks:
            await asyncio.wait(set(tasks))
        self._event.set()

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
        if refused and not await self._record_or_drop(active, SERVICE, refused, now):
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
                task = self._group.create_task(self._deliver(transport, destination, entry))
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

    async def _deliver(self, transport: Transport, destination: Destination, entry: Entry) -> None:
        active = entry.active
        message = active.message
        started = self.clock()
        request = DeliveryRequest(
            queue_id=message.queue_id, sender=message.sender, recipients=entry.recipients,
            transport=transport.name, nexthop=destination.nexthop, size=message.size,
            arrival_time=message.arrival_time, envid=message.envid, ret=message.ret,
            attrs=tuple(sorted(message.attrs.items())),
        )  # fmt: skip
        try:
            if self._active.get(message.queue_id) is not active:
                return  # withdrawn before this delivery could start: it never starts
            try:
                result = await self.agents[transport.name](request)
                crashed = False
            except asyncio.CancelledError:
                await self._shutdown_entry(transport, entry, started)
                raise
            except Exception as exc:  # an agent bug defers its recipients, like a crash
                self.log.warning(SERVICE, f"transport {transport.name} failure: {exc!r}")
                result = DeliveryResult(message.queue_id, ())
                crashed = True
            results, words = self._soften(_complete(entry, result, CRASH))
            active.actions.update((r.seq, r.action) for r in results if r.action)
            recorded = await self._record_or_drop(active, transport.name, results, started,
                                                  result, words)
        finally:
            destination.busy -= 1
            transport.busy -= 1
        if not recorded:
            return
        await self._feedback(transport, destination, results, crashed)
        active.pending -= 1
        if active.pending == 0 and self._active.get(active.queue_id) is active:
            await self._finish(active)
        self._event.set()

    def _soften(self, results: list[RecipientResult]
                ) -> tuple[list[RecipientResult], dict[int, str]]:
        """soft_bounce: permanent failures are kept as deferrals (logged SOFTBOUNCE)."""
        softened = [apply_soft_bounce(r, self.soft_bounce) for r in results]
        return [r for r, _ in softened], {r.seq: word for r, word in softened}

    async def _record_or_drop(self, active: ActiveMessage, transport_name: str,
                              results: list[RecipientResult], started: float,
                              result: DeliveryResult | None = None,
                              words: Mapping[int, str] | None = None) -> bool:
        """Record outcomes; if the queue cannot take them, let go of the message (it stays
        active on disk, and recovery at the next start returns it to incoming)."""
        try:
            await self._record(active, transport_name, results, started, result, words)
        except (QueueError, KeyError) as exc:
            self.log.error(SERVICE, f"{active.queue_id}: cannot record delivery status: {exc}")
            self._release(active.queue_id)
            self._event.set()
            return False
        return True

    async def _shutdown_entry(self, transport: Transport, entry: Entry, started: float) -> None:
        results = [RecipientResult(r.seq, R_DEFERRED, *SHUTDOWN) for r in entry.recipients]
        with contextlib.suppress(QueueError, KeyError):
            await self._record(entry.active, transport.name, results, started)

    async def _feedback(self, transport: Transport, destination: Destination,
                        results: list[RecipientResult], crashed: bool) -> None:
        window = destination.window
        now = self.clock()
        failure = site_failure(results, crashed)
        if failure is None:
            window.positive(destination.busy)
        elif window.negative(now, failure[0], SUSPENDED_PREFIX + failure[1]):
            await self._defer_todo(destination)
        window.delivery_done(now)

    async def _defer_todo(self, destination: Destination) -> None:
        """A destination just died: its waiting entries are deferred without a connection."""
        assert destination.window.dead_reason is not None
        dsn, reason = destination.window.dead_reason
        while destination.todo:
            entry = destination.todo.popleft()
            results = [RecipientResult(r.seq, R_DEFERRED, dsn, reason) for r in entry.recipients]
            active = entry.active
            if self._active.get(active.queue_id) is not active:
                continue  # withdrawn meanwhile; its row may be gone
            if not await self._record_or_drop(active, destination.transport, results,
                                              self.clock()):
                continue
            active.pending -= 1
            if active.pending == 0 and self._active.get(active.queue_id) is active:
                await self._finish(active)

    async def _record(self, active: ActiveMessage, transport_name: str,
                      results: list[RecipientResult], started: float,
                      result: DeliveryResult | None = None,
                      words: Mapping[int, str] | None = None) -> None:
        """Commit outcomes, then log them: the log never claims what the queue lacks."""
        message = active.message
        await self.queue.record_results(message.queue_id, results)
        if self.results_hook is not None:
            self.results_hook(transport_name, results)
        now = self.clock()
        by_seq = {r.seq: r for r in message.recipients}
        delays = finish.split_delays(message.arrival_time, active.entered, started, result)
        for outcome in results:
            rcpt = by_seq[outcome.seq]
            self.log.info(transport_name, delivery_line(
                message.queue_id, rcpt.address, rcpt.orig_rcpt, relay=outcome.relay,
                delay=now - message.arrival_time, delays=delays, dsn=outcome.dsn,
                status=(words or {}).get(outcome.seq, outcome.status), reason=outcome.reason,
            ))  # fmt: skip

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

    async def _matches_site(self, message: QueuedMessage, site: str) -> bool:
        for rcpt in message.recipients:
            if rcpt.done:
                continue
            if rcpt.address.rpartition("@")[2].lower().rstrip(".") == site:
                return True
            with contextlib.suppress(Exception):
                route = await self.resolver(message, rcpt.address)
                if _nexthop_host(route.nexthop) == site:
                    return True
        return False


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


def _complete(entry: Entry, result: DeliveryResult, missing: tuple[str, str]
              ) -> list[RecipientResult]:
    """The agent's outcome for exactly the entry's recipients; one it forgot is deferred."""
    wanted = {ref.seq for ref in entry.recipients}
    got = {r.seq: r for r in result.recipients if r.seq in wanted}
    return [got.get(seq) or RecipientResult(seq, R_DEFERRED, *missing)
            for seq in sorted(wanted)]


def _nexthop_host(nexthop: str) -> str:
    host = nexthop.lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")
