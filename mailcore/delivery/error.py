"""error(8) and retry: deliveries that fail on purpose, with the nexthop text as the reason.

Owns: the ``error`` service (every recipient bounced, status 5.0.0 unless the text starts with
a 5.X.Y code) and the ``retry`` service (every recipient deferred, 4.0.0 unless the text starts
with a 4.X.Y code). ``transport_maps`` entries like ``error:5.1.1 mailbox unavailable`` or
``retry:4.3.2 maintenance`` reach these agents with the text in the request's nexthop.

Must not: read the message or change queue state.

Invariants: a status code of the wrong class in the text is replaced by the service's default
code (Postfix's bounce_append/defer_append do the same); an empty nexthop is a configuration
error and defers with 4.3.5 (Postfix's agent exits fatally, which also leaves the mail queued).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.config.master import Service
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, DeliveryRequest, DeliveryResult, RecipientResult

ERROR_SERVICE = "error"
RETRY_SERVICE = "retry"
CONFIG_ERROR = ("4.3.5", "mail system configuration error")


def split_status(text: str, default: str) -> tuple[str, str]:
    """``"5.1.1 text"`` -> ("5.1.1", "text"); text without a leading code gets ``default``
    (Postfix's dsn_split: leading blanks are skipped, the code ends at a blank or the end)."""
    stripped = text.lstrip()
    head, _, rest = stripped.partition(" ")
    head, tab, tail = head.partition("\t")
    if tab:
        rest = tail + " " + rest
    pieces = head.split(".")
    valid = (len(pieces) == 3 and pieces[0] in ("2", "4", "5")
             and all(p.isascii() and p.isdigit() and 1 <= len(p) <= 3 for p in pieces[1:]))
    if valid:
        return head, rest.strip()
    return default, stripped.strip()


def same_outcome(request: DeliveryRequest, status: str, dsn: str, reason: str,
                 relay: str = "none") -> DeliveryResult:
    """One result for every recipient of the request."""
    return DeliveryResult(request.queue_id, tuple(
        RecipientResult(r.seq, status, dsn, reason, relay=relay) for r in request.recipients))


@dataclass(frozen=True)
class ErrorAgent:
    """error(8) under the service name ``error`` (bounce) or ``retry`` (defer)."""

    retry: bool = False

    @classmethod
    def for_service(cls, service: Service | str) -> ErrorAgent:
        """The agent for a master.cf entry; like Postfix, only the names error and retry."""
        name = service if isinstance(service, str) else service.name
        if name not in (ERROR_SERVICE, RETRY_SERVICE):
            where = {} if isinstance(service, str) else {"file": service.file,
                                                        "line": service.line}
            raise ConfigError(f'error(8) runs only as service "error" or "retry", '
                              f'not "{name}"', **where)
        return cls(retry=name == RETRY_SERVICE)

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if not request.nexthop.strip():
            return same_outcome(request, DEFERRED, *CONFIG_ERROR)
        wanted, status = ("4", DEFERRED) if self.retry else ("5", BOUNCED)
        default = f"{wanted}.0.0"
        dsn, reason = split_status(request.nexthop, default)
        if dsn[0] != wanted:
            dsn = default
        return same_outcome(request, status, dsn, reason)
