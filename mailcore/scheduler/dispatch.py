"""The in-memory side of the active set: messages being worked on, per-destination queues of
delivery entries, and per-transport process accounting with round-robin selection.

Owns the bookkeeping Postfix keeps in qmgr_message/qmgr_queue/qmgr_transport: which entries
wait (todo), how many run (busy), and which destination goes next.

Must not: await anything; the queue manager does all I/O.

Invariants: an entry holds at most the transport's recipient limit of one message's
recipients for one destination; ``busy`` counts deliveries started and not yet ended; a
destination is discarded only when idle (no todo, nothing busy, window ready).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailcore.model import RecipientRef
from mailcore.queue import QueuedMessage
from mailcore.scheduler.settings import TransportSettings
from mailcore.scheduler.window import READY, DestinationWindow


@dataclass(eq=False)
class ActiveMessage:
    message: QueuedMessage
    entered: float  # when it entered the active set (end of delays "a")
    flush: bool  # defer_transports does not apply (a flush brought it in)
    recipients: int  # pending recipients, counted against qmgr_message_recipient_limit
    pending: int = 0  # entries not yet finished
    actions: dict[int, str] = field(default_factory=dict)  # DSN actions seen this pass

    @property
    def queue_id(self) -> str:
        return self.message.queue_id


@dataclass(eq=False)
class Entry:
    active: ActiveMessage
    recipients: tuple[RecipientRef, ...]


@dataclass(eq=False)
class Destination:
    transport: str
    nexthop: str
    window: DestinationWindow
    todo: deque[Entry] = field(default_factory=deque)
    busy: int = 0

    @property
    def idle(self) -> bool:
        return not self.todo and self.busy == 0 and self.window.state == READY


class Transport:
    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.busy = 0
        self.destinations: dict[tuple[str, str], Destination] = {}

    def destination(self, nexthop: str) -> Destination:
        key = (self.name, nexthop)
        found = self.destinations.get(key)
        if found is None:
            found = Destination(self.name, nexthop, DestinationWindow(self.settings.window))
            self.destinations[key] = found
        return found

    def entries(self, active: ActiveMessage, refs: list[RecipientRef]) -> Iterator[Entry]:
        """One message's recipients for one destination, cut at the recipient limit."""
        limit = self.settings.recipient_limit
        step = limit if limit > 0 else max(1, len(refs))
        for start in range(0, len(refs), step):
            yield Entry(active, tuple(refs[start:start + step]))

    def has_process(self) -> bool:
        limit = self.settings.process_limit
        return limit == 0 or self.busy < limit

    def select(self) -> tuple[Destination, Entry] | None:
        """Take the next entry from the first destination (round robin) whose window has
        room; that destination then moves to the back of the line."""
        for key, destination in self.destinations.items():
            if destination.todo and destination.window.can_start(destination.busy):
                entry = destination.todo.popleft()
                destination.busy += 1
                self.busy += 1
                # dicts keep insertion order: re-inserting rotates the round robin
                del self.destinations[key]
                self.destinations[key] = destination
                return destination, entry
        return None
