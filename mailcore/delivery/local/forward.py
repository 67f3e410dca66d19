"""Resubmission of aliased and forwarded mail through cleanup (Postfix forward.c).

Owns: ``Resubmitter`` (the one thing local delivery needs from cleanup: queue a new message
with the original content, a Delivered-To header and a chosen sender) and its
implementation on top of ``Cleanup.open``/``Cleanup.enqueue``.
Must not: decide who is forwarded to or with which sender (the expansion code does).
Invariants: the new message has its own queue ID and is durable before ``resubmit`` returns;
its recipients' DSN NOTIFY never carries SUCCESS on from the original.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from mailcore.cleanup import Cleanup, CleanupReject
from mailcore.cleanup.service import LOCAL_CLIENT
from mailcore.delivery.mailbox import MessageFile
from mailcore.model import Envelope, EnvelopeRecipient


class ResubmitError(Exception):
    def __init__(self, dsn: str, text: str):
        super().__init__(text)
        self.dsn, self.text = dsn, text


class Resubmitter(Protocol):
    async def resubmit(self, *, sender: str, recipients: Sequence[EnvelopeRecipient],
                       delivered_to: str | None, message: MessageFile,
                       envid: str | None, ret: str | None) -> str:
        """Queue a new message; return its queue ID or raise ResubmitError."""


async def message_lines(message: MessageFile) -> AsyncIterator[bytes]:
    """The message lines without LF, read in a thread a batch at a time."""
    loop = asyncio.get_running_loop()
    lines = message.lines()

    def batch() -> list[bytes]:
        out: list[bytes] = []
        for line in lines:
            out.append(line[:-1])
            if len(out) >= 2000:
                break
        return out

    while chunk := await loop.run_in_executor(None, batch):
        for line in chunk:
            yield line


class CleanupResubmitter:
    """Resubmits through a Cleanup instance: the path aliases and .forward files take."""

    def __init__(self, cleanup: Cleanup) -> None:
        self._cleanup = cleanup

    async def resubmit(self, *, sender: str, recipients: Sequence[EnvelopeRecipient],
                       delivered_to: str | None, message: MessageFile,
                       envid: str | None, ret: str | None) -> str:
        queue_id = self._cleanup.new_queue_id()
        first = [f"Delivered-To: {delivered_to.lower()}".encode()] if delivered_to else []
        writer = await self._cleanup.open(queue_id=queue_id, sender=sender,
                                          local_submission=False, first_headers=first)
        try:
            async for line in message_lines(message):
                await writer.write_line(line)
            envelope = Envelope(sender=sender, recipients=tuple(recipients),
                                client=LOCAL_CLIENT, arrival_time=time.time(), ret=ret,
                                envid=envid)
            return await self._cleanup.enqueue(writer, envelope, queue_id)
        except CleanupReject as exc:
            writer.abort()
            raise ResubmitError(exc.dsn, f"cleanup refused the forwarded message: "
                                         f"{exc.text}") from None
        except BaseException:
            writer.abort()
            raise
