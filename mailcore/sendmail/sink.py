"""``sendmail -bs``: smtpd's message-sink protocol writing maildrop files.

Owns: ``MaildropSink`` and its per-message ``MaildropSinkWriter``: each message smtpd
accepts becomes a maildrop file whose name is the queue ID the client sees.
Must not: touch the queue database or cleanup (pickup feeds the files in later), or decide
what smtpd accepts.
Invariants: past size_limit (message_size_limit; 0: none) lines are dropped and
``too_big`` is set, so smtpd can refuse the message; a commit failure surfaces as
QueueWriteError, as the queue-backed sink reports it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailcore.maildrop import DropEnvelope, DropRecipient, MaildropError, MaildropWriter
from mailcore.model import Envelope
from mailcore.queue import QueueWriteError
from mailcore.queueid import QueueIdAllocator
from mailcore.sendmail.submit import Submitter


class MaildropSinkWriter:
    """The writer smtpd feeds during ``sendmail -bs``: lines go into a maildrop file."""

    def __init__(self, writer: MaildropWriter, size_limit: int):
        self.drop = writer
        self._limit = size_limit
        self.too_big = False

    async def write_line(self, line: bytes) -> None:
        self.write_line_now(line)

    def write_line_now(self, line: bytes) -> None:
        if self.too_big:
            return
        if self._limit and self.drop.content_size + len(line) + 1 > self._limit:
            self.too_big = True
            return
        self.drop.write_line(line)

    def abort(self) -> None:
        self.drop.abort()


class MaildropSink:
    """smtpd's MessageSink protocol for ``sendmail -bs``: each accepted message becomes a
    maildrop file (its name is the queue ID the client sees), later fed in by pickup."""

    def __init__(self, maildrop_dir: Path, who: Submitter, size_limit: int = 0):
        self._dir = maildrop_dir
        self._who = who
        self._limit = size_limit
        self._ids = QueueIdAllocator()

    def new_queue_id(self) -> str:
        return self._ids.allocate()

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: object = None,
                   recipient: str = "") -> MaildropSinkWriter:
        writer = MaildropSinkWriter(MaildropWriter(self._dir, allocator=self._ids),
                                    self._limit)
        for line in first_headers:
            writer.write_line_now(line)
        return writer

    async def enqueue(self, writer: MaildropSinkWriter, envelope: Envelope,
                      queue_id: str) -> str:
        drop = DropEnvelope(
            sender=envelope.sender,
            recipients=tuple(DropRecipient(r.address, r.orig_rcpt, r.notify)
                             for r in envelope.recipients),
            arrival_time=envelope.arrival_time, uid=self._who.uid,
            full_name=self._who.gecos_name, envid=envelope.envid, ret=envelope.ret,
            body_type=envelope.body_type if envelope.body_type != "BINARYMIME" else "",
            flags=("smtp",),
        )  # fmt: skip
        try:
            return await asyncio.to_thread(writer.drop.commit, drop, queue_id)
        except MaildropError as exc:
            raise QueueWriteError(str(exc)) from exc
