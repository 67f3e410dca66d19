"""discard(8): every recipient marked as delivered, nothing delivered.

Owns: the ``discard`` service; the request's nexthop text is the reason that is logged
(``discard:silently dropped`` in transport_maps logs ``status=sent (silently dropped)``), with
a leading 2.X.Y status code taken from the text, else 2.0.0.

Must not: read the message or change queue state.

Invariants: a code of another class in the text is replaced by 2.0.0, as Postfix's sent()
does; an empty nexthop is a configuration error and defers with 4.3.5 (Postfix's agent exits
fatally, which also leaves the mail queued).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.delivery.error import CONFIG_ERROR, same_outcome, split_status
from mailcore.model import DEFERRED, SENT, DeliveryRequest, DeliveryResult


@dataclass(frozen=True)
class DiscardAgent:
    """discard(8): success for every recipient, with the nexthop as the reason."""

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if not request.nexthop.strip():
            return same_outcome(request, DEFERRED, *CONFIG_ERROR)
        dsn, reason = split_status(request.nexthop, "2.0.0")
        return same_outcome(request, SENT, dsn if dsn[0] == "2" else "2.0.0", reason)
