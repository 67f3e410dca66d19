"""What the queue manager is given and what it reports: the injected callables' types, the
notifier protocol, and the read-only load snapshot.

Owns these types only, so that the parts of the scheduler and the code composing it
(app.py, metrics.py) agree on them without importing the QueueManager.

Must not: hold state or behaviour.

Invariants: a DestinationLoad is a copy; changing the scheduler never changes one handed out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailcore.model import DeliveryRequest, DeliveryResult, RecipientResult, Route
from mailcore.queue import QueuedMessage, QueuedRecipient

# (the message, one of its recipients) -> where that recipient goes; the message carries the
# sender and attributes such as content_filter that decide the route.
Resolver = Callable[[QueuedMessage, str], Awaitable[Route]]
Agent = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Told (transport or "qmgr", outcomes) after outcomes are committed: the metrics counters.
ResultsHook = Callable[[str, Sequence[RecipientResult]], None]


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
