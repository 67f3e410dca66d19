"""The cleanup service: opens message writers and turns finished messages into queue entries.

Owns: the per-snapshot pieces cleanup needs (content checks, the rewriter, the header rewrite
context), envelope rewriting (canonical, masquerading, virtual alias expansion, automatic
BCC, duplicate elimination) and the content-check effects on the envelope (DISCARD, HOLD,
REDIRECT, BCC, FILTER) before the message is committed.

Must not: speak SMTP or decide routing.

Invariants: ``enqueue`` returns only after the queue committed (the caller may then say 250);
the spool file is gone on every path out of ``enqueue``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mailcore.addrclass import DomainClassifier
from mailcore.checks import ContentChecks, LogFacts
from mailcore.cleanup.headers import envelope_attrs
from mailcore.cleanup.writer import (
    CleanedMessage,
    CleanupReject,
    CleanupSettings,
    HeaderRewrite,
    MessageWriter,
    open_writer,
)
from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope, EnvelopeRecipient
from mailcore.queue import HOLD, INCOMING, NewMessage, NewRecipient, Queue
from mailcore.rewrite import Rewriter, header_rewrite_context
from mailcore.tables import TableSet

LOCAL_CLIENT = ClientInfo(address="", name="localhost", protocol="local")
# Messages up to this size are kept in memory between DATA and the commit instead of in a
# spool file; the same bound the spool file's write buffer had.
SPOOL_MEMORY_LIMIT = 256 * 1024


def cleanup_settings(config: Config) -> CleanupSettings:
    return CleanupSettings(
        myhostname=config.get("myhostname"),
        mail_name=config.get("mail_name"),
        header_size_limit=config.get_size("header_size_limit"),
        hopcount_limit=config.get_int("hopcount_limit"),
        message_size_limit=config.get_size("message_size_limit"),
        always_add_missing_headers=config.get_bool("always_add_missing_headers"),
        memory_limit=SPOOL_MEMORY_LIMIT,
    )


class Cleanup:
    """One per Config snapshot; shared by smtpd sessions, pickup and (later) local delivery."""

    def __init__(self, config: Config, tables: TableSet, queue: Queue, log: MailLog,
                 spool_dir: Path, *, on_enqueued: Callable[[str], None] | None = None):
        self._config = config
        self._tables = tables
        self.settings = cleanup_settings(config)
        self._queue = queue
        self._log = log
        self._spool_dir = spool_dir
        self._classifier = DomainClassifier(config, tables)
        self.rewriter = Rewriter(config, tables, self._classifier,
                                 warn=lambda text: log.warning("cleanup", text))
        self._checks = ContentChecks(config, tables,
                                     warn=lambda text: log.warning("cleanup", text))
        self._on_enqueued = on_enqueued
        self._filter = config.get("content_filter")

    def new_queue_id(self) -> str:
        return self._queue.new_queue_id()

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], full_name: str = "",
                   client: ClientInfo | None = None, recipient: str = "") -> MessageWriter:
        client = client or LOCAL_CLIENT
        facts = LogFacts(queue_id=queue_id, origin=client.display if client.address
                         else "local", sender=sender, recipient=recipient,
                         protocol=client.protocol, helo=client.helo)
        # The sender is rewritten once, on arrival, as Postfix's cleanup does: a From header
        # cleanup adds then shows the rewritten address.
        return await open_writer(
            self.settings, self._spool_dir / f"{queue_id}.tmp", queue_id=queue_id,
            sender=await self.rewriter.rewrite_sender(sender),
            local_submission=local_submission, first_headers=first_headers,
            full_name=full_name, checks=self._checks, facts=facts,
            rewrite_header=await self._header_rewrite(client, local_submission),
        )

    async def _header_rewrite(self, client: ClientInfo,
                              local_submission: bool) -> HeaderRewrite | None:
        context = await header_rewrite_context(self._config, self._tables, self._classifier,
                                               client, local_submission=local_submission)
        if context is None:
            return None

        async def rewrite(name: str, value: str) -> str:
            return await self.rewriter.rewrite_header(name, value, context=context)

        return rewrite

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str:
        """Finish the writer, rewrite the envelope, commit durably; then say 250.

        Raises CleanupReject for a refused message and the queue's QueueWriteError /
        QueueFullError when the commit fails."""
        try:
            cleaned = await writer.finish()
        except CleanupReject:
            self._log_lines(writer.logs)
            raise
        try:
            self._log_lines(cleaned.logs)
            if cleaned.verdict.discard:
                return queue_id  # accepted and dropped, as Postfix's DISCARD does
            envelope = await self._rewrite_envelope(envelope, cleaned)
            await self._queue.enqueue(self._new_message(envelope, cleaned, queue_id))
        finally:
            if cleaned.content is None:
                cleaned.spool_path.unlink(missing_ok=True)
        self._log_accepted(queue_id, envelope, cleaned)
        return queue_id

    async def _rewrite_envelope(self, envelope: Envelope, cleaned: CleanedMessage) -> Envelope:
        rewriter, verdict = self.rewriter, cleaned.verdict
        sender = cleaned.sender
        recipients = [
            replace(r, address=await rewriter.rewrite_recipient(r.address),
                    orig_rcpt=r.orig_rcpt or r.address)
            for r in envelope.recipients
        ]
        if verdict.redirect:
            recipients = [EnvelopeRecipient(verdict.redirect, orig_rcpt=r.orig_rcpt)
                          for r in recipients[:1]]
        recipients += [EnvelopeRecipient(address) for address in verdict.bcc]
        expanded = await rewriter.expand_recipients(recipients, sender=sender)
        if expanded.defer_reason:
            raise CleanupReject(451, "4.6.0", expanded.defer_reason)
        for failure in expanded.failures:
            self._log.info("cleanup", f"{failure.recipient.address}: {failure.status} "
                                      f"{failure.text}")
        if not expanded.recipients:
            failure = expanded.failures[0] if expanded.failures else None
            raise CleanupReject(failure.code if failure else 550,
                                failure.status if failure else "5.1.1",
                                failure.text if failure else "no recipients")
        return replace(envelope, sender=sender, recipients=expanded.recipients)

    def _new_message(self, envelope: Envelope, cleaned: CleanedMessage,
                     queue_id: str) -> NewMessage:
        attrs = envelope_attrs(envelope)
        # A FILTER action beats content_filter from main.cf (or a listener's -o), as in Postfix.
        content_filter = cleaned.verdict.filter or attrs.get("content_filter") or self._filter
        if content_filter:
            attrs["content_filter"] = content_filter
        return NewMessage(
            sender=envelope.sender,
            recipients=tuple(NewRecipient(r.address, r.orig_rcpt, r.notify, r.orcpt)
                             for r in envelope.recipients),
            content_path=cleaned.spool_path if cleaned.content is None else None,
            content=cleaned.content, size=cleaned.size,
            arrival_time=envelope.arrival_time, envid=envelope.envid, ret=envelope.ret,
            attrs=attrs, state=HOLD if cleaned.verdict.hold else INCOMING, queue_id=queue_id,
        )

    def _log_lines(self, lines: tuple[str, ...]) -> None:
        for line in lines:
            self._log.info("cleanup", line)

    def _log_accepted(self, queue_id: str, envelope: Envelope, cleaned: CleanedMessage) -> None:
        if cleaned.message_id:
            self._log.info("cleanup", f"{queue_id}: message-id=<{cleaned.message_id}>")
        self._log.info(
            "qmgr",
            f"{queue_id}: from=<{envelope.sender}>, size={cleaned.size}, "
            f"nrcpt={len(envelope.recipients)} (queue active)",
        )
        if self._on_enqueued is not None:
            self._on_enqueued(queue_id)
