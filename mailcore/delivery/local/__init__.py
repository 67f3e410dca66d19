"""The local delivery agent (Postfix local(8)): recipients in mydestination.

Owns: ``LocalAgent.deliver`` — load the message once, expand and deliver each recipient
(expand.py, targets.py), resubmit forwarded addresses through cleanup (forward.py) and fold
every outcome of one recipient into its RecipientResult (relay "local").
Must not: change queue state or log delivery results (the scheduler does).

Folding: Postfix logs each final destination of an alias separately; mailcore's queue has one
status per recipient, so a recipient is deferred when any destination deferred (the whole
expansion is retried later, as Postfix retries the recipient), else bounced when any bounced,
else sent with the last success text.
Collaborators: ``resubmitter`` (cleanup), ``is_local`` (is an address ours? default: no
domain or a domain in mydestination), ``pass_agent`` (transport name → agent, for
mailbox_transport and fallback_transport), ``users`` (passwd entries; default: the
passwd-form results of local_recipient_maps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailcore.config import Config
from mailcore.delivery import ContentSource
from mailcore.delivery.local.expand import Attr, Expander, Run
from mailcore.delivery.local.forward import CleanupResubmitter, ResubmitError, Resubmitter
from mailcore.delivery.local.settings import LocalSettings, local_settings
from mailcore.delivery.local.targets import Agent, Targets
from mailcore.delivery.local.users import TableUsers, User, UserDb, parse_passwd
from mailcore.delivery.mailbox import MessageFile
from mailcore.delivery.privileges import Privileges
from mailcore.model import (
    BOUNCED,
    DEFERRED,
    DeliveryRequest,
    DeliveryResult,
    Destination,
    EnvelopeRecipient,
    RecipientRef,
    RecipientResult,
)
from mailcore.tables import TableSet

RELAY = "local"

__all__ = ["CleanupResubmitter", "LocalAgent", "LocalSettings", "Resubmitter", "TableUsers",
           "User", "UserDb", "local_settings", "parse_passwd"]


class LocalAgent:
    def __init__(
        self,
        config: Config,
        tables: TableSet,
        content: ContentSource,
        *,
        resubmitter: Resubmitter | None = None,
        users: UserDb | None = None,
        privileges: Privileges | None = None,
        is_local: Callable[[str], Awaitable[bool]] | None = None,
        pass_agent: Callable[[str], Agent | None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = local_settings(config)
        self.tables = tables
        self.content = content
        self.resubmitter = resubmitter
        self.users: UserDb = users or TableUsers(
            [tables.open(spec) for spec in self.settings.recipient_maps])
        self.privileges = privileges or Privileges()
        self._is_local = is_local
        self.pass_agent = pass_agent
        self.warn: Callable[[str], None] = warn or (lambda text: None)

    async def is_local(self, address: str) -> bool:
        if self._is_local is not None:
            return await self._is_local(address)
        _, at, domain = address.rpartition("@")
        domain = domain.lower().rstrip(".")
        return not at or domain in self.settings.mydestination

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        message = await MessageFile.load(self.content, request.queue_id)
        try:
            results = [await self._one(request, message, ref) for ref in request.recipients]
        finally:
            message.close()
        return DeliveryResult(request.queue_id, tuple(results))

    async def _one(self, request: DeliveryRequest, message: MessageFile,
                   ref: RecipientRef) -> RecipientResult:
        run = Run()
        targets = Targets(self, request, message, ref)
        attr = Attr(level=0, address=ref.address, sender=request.sender, delivered="",
                    orig_rcpt=ref.orig_rcpt or ref.address, notify=ref.notify)
        try:
            await Expander(targets).recipient(run, attr)
            await self._forward(run, request, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.warn(f"{request.queue_id}: local delivery to {ref.address}: {exc!r}")
            run.record("4.3.0", "local delivery failed: internal error")
        return fold(ref.seq, run, ref.address)

    async def _forward(self, run: Run, request: DeliveryRequest, message: MessageFile) -> None:
        for (sender, delivered, notify), addresses in run.forwards.items():
            if self.resubmitter is None:
                run.record("4.3.0", "forwarding is not available: no cleanup service")
                continue
            recipients = [EnvelopeRecipient(a, notify=notify) for a in addresses]
            header = delivered if "forward" in self.settings.prepend_delivered else None
            try:
                queue_id = await self.resubmitter.resubmit(
                    sender=sender, recipients=recipients, delivered_to=header,
                    message=message, envid=request.envid, ret=request.ret)
            except ResubmitError as exc:
                _record_each(run, addresses, exc.dsn, exc.text)
                continue
            except Exception as exc:
                _record_each(run, addresses, "4.3.0", f"cannot resubmit forwarded message: {exc}")
                continue
            _record_each(run, addresses, "2.0.0", f"forwarded as {queue_id}", "relayed")


def _record_each(run: Run, addresses: list[str], dsn: str, text: str, action: str = "") -> None:
    """One outcome per forwarded address, as Postfix logs each forward on its own line."""
    for address in addresses:
        run.current = address
        run.record(dsn, text, action)
    run.current = ""


def fold(seq: int, run: Run, address: str = "") -> RecipientResult:
    """One RecipientResult from every destination's outcome (see the module docstring);
    when the recipient was expanded to other addresses, each destination is kept too."""
    if not run.outcomes:  # only duplicates: the same destination was already handled
        return RecipientResult(seq, "sent", "2.0.0", "delivered (duplicate)", relay=RELAY)
    destinations = _destinations(run, address)
    for wanted in (DEFERRED, BOUNCED):
        for outcome in run.outcomes:
            if outcome.status == wanted:
                return RecipientResult(seq, wanted, outcome.dsn, outcome.text, relay=RELAY,
                                       destinations=destinations)
    last = run.outcomes[-1]
    return RecipientResult(seq, "sent", last.dsn, last.text, relay=RELAY, action=last.action,
                           destinations=destinations)


def _destinations(run: Run, address: str) -> tuple[Destination, ...]:
    outcomes = run.outcomes
    if len(outcomes) == 1 and outcomes[0].address.lower() in ("", address.lower()):
        return ()  # one destination, the queued address itself: the plain line says it all
    return tuple(Destination(o.address or address, o.status, o.dsn, o.text) for o in outcomes)
