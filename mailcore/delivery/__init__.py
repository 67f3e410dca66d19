"""Delivery agents: one module per agent (smtp, lmtp, local, virtual, pipe, error, discard).

Every agent is an object with ``async deliver(request) -> DeliveryResult`` that classifies each
recipient's outcome as sent, deferred or bounced with an enhanced status code, where the
failure is seen. Agents never change queue state and never log delivery results (the
scheduler records and logs them); they read message content through ``ContentSource``.

A delivery that raises or times out is deferred for all its recipients by the scheduler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from mailcore.model import DeliveryRequest, DeliveryResult

# queue_id -> the stored message content in chunks (lines end in LF, as cleanup stored them)
ContentSource = Callable[[str], AsyncIterator[bytes]]


class DeliveryAgent(Protocol):
    async def deliver(self, request: DeliveryRequest) -> DeliveryResult: ...


async def content_lines(source: ContentSource, queue_id: str) -> AsyncIterator[bytes]:
    """The stored message one line at a time (without its LF), never all in memory."""
    partial = b""
    async for chunk in source(queue_id):
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            yield line
    if partial:
        yield partial
