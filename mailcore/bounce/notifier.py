"""The bounce service the scheduler calls: plan, build and enqueue notices, and log them.

Owns: turning one "these recipients bounced / are delayed / were delivered" event into the
notices policy.py plans, with the original streamed from the queue (never more than
bounce_size_limit of it held), enqueued through the injected ``enqueue``, and Postfix's
maillog lines (``QUEUEID: sender non-delivery notification: NEWID``).

Must not: change the original message's queue state or deliver anything.

Invariants: when a required notice (the sender's, or the double bounce) cannot be enqueued
the error propagates, so the caller keeps the recipients and tries again later, as qmgr does
when bounce(8) fails; a failed postmaster copy is only a warning.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence

from mailcore.bounce.dsn import Notice, original_mode, render
from mailcore.bounce.original import acollect_original
from mailcore.bounce.policy import (
    BOUNCE,
    DELAY,
    SUCCESS,
    BounceSettings,
    NoticePlan,
    bounce_settings,
    plan_notices,
    wants_error_notice,
)
from mailcore.bounce.postmaster import build_error_notice
from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.queue.types import NewMessage, QueuedMessage, QueuedRecipient, QueueError

SERVICE = "bounce"

Enqueue = Callable[[NewMessage], Awaitable[str]]
ReadContent = Callable[[str], AsyncIterable[bytes]]


class Notifier:
    """Implements the scheduler's notice protocol: ``bounced``, ``delayed``, ``succeeded``.

    Each returns the queue IDs of the notices it enqueued."""

    def __init__(self, config: Config | BounceSettings, enqueue: Enqueue,
                 read_content: ReadContent, log: MailLog, *,
                 new_queue_id: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = config if isinstance(config, BounceSettings) else bounce_settings(config)
        self._enqueue = enqueue
        self._read_content = read_content
        self._log = log
        self._new_queue_id = new_queue_id
        self._clock = clock

    async def bounced(self, message: QueuedMessage,
                      recipients: Sequence[QueuedRecipient]) -> list[str]:
        return await self._notify(BOUNCE, message, recipients, {})

    async def delayed(self, message: QueuedMessage,
                      recipients: Sequence[QueuedRecipient]) -> list[str]:
        return await self._notify(DELAY, message, recipients, {})

    async def succeeded(self, message: QueuedMessage, recipients: Sequence[QueuedRecipient],
                        actions: Mapping[int, str] | None = None) -> list[str]:
        """``actions`` maps a recipient's seq to its DSN action ("relayed" when the next hop
        lacked DSN, "expanded" for an alias); absent means "delivered"."""
        return await self._notify(SUCCESS, message, recipients, actions or {})

    async def error_notice(self, client: str, transcript: Iterable[str], reason: str | None,
                           error_classes: Iterable[str]) -> str | None:
        """smtpd's postmaster transcript, when notify_classes covers an error it saw."""
        if not wants_error_notice(error_classes, self.settings):
            return None
        now = self._clock()
        notice = build_error_notice(client, transcript, reason, self.settings, now)
        try:
            return await self._submit(notice, now)
        except QueueError as exc:
            self._log.warning(SERVICE, f"postmaster notify: {exc}")
            return None

    async def _notify(self, kind: str, message: QueuedMessage,
                      recipients: Sequence[QueuedRecipient],
                      actions: Mapping[int, str]) -> list[str]:
        qid = message.queue_id
        decision = plan_notices(kind, message, recipients, self.settings)
        for text in decision.warnings:
            self._log.warning(SERVICE, f"{qid}: {text}")
        for text in decision.infos:
            self._log.info(SERVICE, f"{qid}: {text}")
        new_ids: list[str] = []
        for plan in decision.notices:
            try:
                new_id = await self._send(plan, message, actions)
            except QueueError:
                if plan.required:
                    raise
                verb = "bouncing to" if kind == BOUNCE else "warning"
                self._log.warning(SERVICE, f"{qid}: postmaster notice failed while {verb} "
                                  f"{message.sender or '<>'}")
                continue
            self._log.info(SERVICE, f"{qid}: {plan.label}: {new_id}")
            new_ids.append(new_id)
        return new_ids

    async def _send(self, plan: NoticePlan, message: QueuedMessage,
                    actions: Mapping[int, str]) -> str:
        now = self._clock()
        mode = original_mode(plan, message, self.settings)
        original: bytes | None
        try:
            original = await acollect_original(
                self._read_content(message.queue_id), mode, self.settings.bounce_size_limit)
        except QueueError as exc:
            # Postfix sends the notice without the original rather than not at all.
            self._log.warning(SERVICE, f"{message.queue_id}: original unavailable: {exc}")
            original = None
        queue_id = self._new_queue_id() if self._new_queue_id else None
        notice = render(plan, message, original, mode, self.settings, now, actions=actions,
                        queue_id=queue_id)
        return await self._submit(notice, now, queue_id)

    async def _submit(self, notice: Notice, now: float, queue_id: str | None = None) -> str:
        return await self._enqueue(notice.new_message(now, queue_id))
