"""Receiving one session's message content and committing it: the DATA and BDAT paths.

Owns: opening the sink's MessageWriter (the transaction's access-table PREPEND headers
first, then our Received header), reading DATA content or storing and skipping BDAT chunks
(the partial BDAT message between chunks), the end-of-data restrictions, handing cleanup
the transaction's HOLD/DISCARD/REDIRECT/FILTER effects with the finished message, and the
reply to the end of the message: the durable 250 only after ``sink.enqueue`` returned, or
the refusal.

Must not: parse commands, decide sequencing, or count errors (session.py and policy.py
do); send anything but the DATA go-ahead (through the session's ``send``); write to the
queue other than through the sink.

Invariants: a MessageWriter that was opened is either enqueued or aborted (a partial BDAT
message when its transaction ends by RSET, HELO/EHLO, an error, or the end of the session);
the octets of every BDAT chunk handed to ``consume`` are consumed or the input ended
(``LostConnection``); CancelledError is never swallowed; a client never sees exception
text. Parameters read (through ``SmtpdSettings``): myhostname, mail_name,
message_size_limit, line_length_limit, smtpd_forbid_bare_newline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from mailcore.cleanup import CleanedMessage, CleanupReject, MessageWriter, received_header
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope
from mailcore.queue import QueueFullError, QueueWriteError
from mailcore.smtpd import data as data_mod
from mailcore.smtpd.bdat import BdatCommand, ChunkReader, LineSplitter, receive_chunk
from mailcore.smtpd.lines import BARE_LF, EOF
from mailcore.smtpd.policy import INTERNAL, NO_SPACE, TOO_BIG, WRITE_ERROR, Dialogue
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply
from mailcore.smtpd.state import Effects, SessionState, Transaction


class MessageSink(Protocol):
    """Where accepted messages go: cleanup.Cleanup (the queue) or the maildrop writer of
    ``sendmail -bs``. ``enqueue`` returns the queue ID only once the message is durable."""

    def new_queue_id(self) -> str: ...

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: ClientInfo | None = None,
                   recipient: str = "") -> MessageWriter: ...

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str: ...


class LostConnection(Exception):
    """The client's input ended in the middle of the dialogue."""


class _EffectsWriter:
    """A MessageWriter whose finished message carries the smtpd access-table effects, the
    way Postfix's smtpd hands cleanup its HOLD/DISCARD flags and FILTER/REDIRECT records:
    cleanup's own header/body check results come later and win for FILTER and REDIRECT."""

    def __init__(self, inner: MessageWriter, effects: Effects) -> None:
        self._inner = inner
        self._effects = effects
        self.spool_path = inner.spool_path

    @property
    def too_big(self) -> bool:
        return self._inner.too_big

    @property
    def logs(self) -> tuple[str, ...]:
        return self._inner.logs

    async def write_line(self, line: bytes) -> None:
        await self._inner.write_line(line)

    def abort(self) -> None:
        self._inner.abort()

    async def finish(self) -> CleanedMessage:
        cleaned = await self._inner.finish()
        content, mine = cleaned.verdict, self._effects
        verdict = replace(content, hold=content.hold or mine.hold,
                          discard=content.discard or mine.discard,
                          redirect=content.redirect or mine.redirect,
                          filter=content.filter or mine.filter)
        return replace(cleaned, verdict=verdict)


@dataclass
class _Chunked:
    """The BDAT message being received: its transaction, writer and octets so far."""

    tx: Transaction
    writer: MessageWriter
    feed: data_mod.Feed
    splitter: LineSplitter
    octets: int = 0


class Transfer:
    """The message content of one session. ``send`` queues a reply to the client;
    ``bare_newline`` logs a refused bare LF and closes the session (it never returns)."""

    def __init__(self, settings: SmtpdSettings, state: SessionState, dialogue: Dialogue,
                 sink: MessageSink, lines: ChunkReader, log: MailLog, *,
                 send: Callable[[Reply], Awaitable[None]],
                 bare_newline: Callable[[], Awaitable[None]]) -> None:
        self.settings = settings
        self.state = state
        self.dialogue = dialogue
        self._sink = sink
        self._lines = lines
        self._log = log
        self._send = send
        self._bare_newline = bare_newline
        self._chunked: _Chunked | None = None

    # --- DATA -------------------------------------------------------------------------
    async def data(self, go_ahead: Reply) -> Reply:
        """Send the 354, read the content up to the lone dot and commit it: the reply to
        the end of the message."""
        tx, envelope = self.state.tx, self.state.envelope()
        assert tx is not None and tx.queue_id is not None
        writer = await self._open_writer(tx, envelope)
        feed = data_mod.Feed(writer)
        try:
            await self._send(go_ahead)
            outcome = await data_mod.receive(
                self._lines, feed, limit=self.settings.line_length_limit,
                forbid_bare_lf=self.settings.forbid_bare_newline)
        except BaseException:
            writer.abort()
            raise
        if outcome != data_mod.END:
            writer.abort()
            self.state.tx = None
            if outcome == data_mod.EOF:
                raise LostConnection
            await self._bare_newline()
        return await self._commit(writer, feed, envelope, tx.queue_id)

    async def _open_writer(self, tx: Transaction, envelope: Envelope) -> MessageWriter:
        assert tx.queue_id is not None
        # Access-table PREPEND headers go before our Received header, as in Postfix.
        prepended = [h.encode("utf-8", "surrogateescape") for h in tx.effects.prepend]
        return await self._sink.open(
            queue_id=tx.queue_id, sender=tx.sender, local_submission=False,
            first_headers=prepended + received_header(
                client=envelope.client, myhostname=self.settings.myhostname,
                mail_name=self.settings.mail_name, queue_id=tx.queue_id,
                recipients=[r.address for r in tx.recipients]),
            client=envelope.client, recipient=tx.recipients[0].address,
        )

    async def _commit(self, writer: MessageWriter, feed: data_mod.Feed, envelope: Envelope,
                      queue_id: str, *, octets: int | None = None) -> Reply:
        refusal: Reply | None = None
        if writer.too_big:
            refusal = TOO_BIG
        elif feed.rejected is not None:
            exc = feed.rejected
            refusal = reply(exc.code, exc.dsn, exc.text)
        else:
            try:
                refusal = await self.dialogue.end_of_data()
            except Exception as exc:
                self._log.error("smtpd", f"{queue_id}: end-of-data check: {exc}")
                refusal = INTERNAL
        tx = self.state.tx
        if refusal is None and tx is not None and tx.effects != Effects():
            # Wrapped only now: end-of-data restrictions may still have added HOLD & co.
            writer = _EffectsWriter(writer, tx.effects)  # type: ignore[assignment]
        if refusal is not None:
            writer.abort()
            if refusal is not INTERNAL:
                self.dialogue.log_reject("END-OF-MESSAGE", refusal)
            return refusal
        return await self._enqueue(writer, envelope, queue_id, octets=octets)

    async def _enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str, *,
                       octets: int | None = None) -> Reply:
        try:
            queue_id = await self._sink.enqueue(writer, envelope, queue_id)
        except CleanupReject as exc:
            answer = reply(exc.code, exc.dsn, exc.text)
            self.dialogue.log_reject("END-OF-MESSAGE", answer)
            return answer
        except QueueFullError as exc:
            self._log.warning("smtpd", f"{queue_id}: queue file write error: {exc}")
            return NO_SPACE
        except Exception as exc:
            what = "queue file write error" if isinstance(exc, QueueWriteError) else (
                f"{type(exc).__name__}")
            self._log.warning("smtpd", f"{queue_id}: {what}: {exc}")
            writer.abort()
            return WRITE_ERROR
        if octets is not None:  # BDAT: Postfix names the message size as well
            return reply(250, "2.0.0", f"Ok: {octets} bytes queued as {queue_id}")
        return reply(250, "2.0.0", f"Ok: queued as {queue_id}")

    # --- BDAT -------------------------------------------------------------------------
    async def store_chunk(self, command: BdatCommand, tx: Transaction) -> Reply:
        """Store an accepted chunk; after the LAST one, commit the message. The reply."""
        chunked = self._chunked
        if chunked is None:
            try:
                chunked = self._chunked = await self._open_chunked(tx)
            except Exception as exc:  # the sink's trouble: a 4xx, never exception text
                self._log.error("smtpd", f"{tx.queue_id}: BDAT: {type(exc).__name__}: {exc}")
                await self.consume(command.size, None)
                tx.bdat_failed = INTERNAL
                return INTERNAL
        limit = self.settings.message_size_limit
        if limit and chunked.octets + command.size > limit:
            await self.consume(command.size, None)
            self.dialogue.log_reject("BDAT", TOO_BIG)
            tx.bdat_failed = TOO_BIG
            return TOO_BIG
        if await self.consume(command.size, chunked.splitter) == BARE_LF:
            self.drop_chunked()
            self.state.tx = None
            await self._bare_newline()
        chunked.octets += command.size
        if not command.last:
            return reply(250, "2.0.0", f"Ok: {command.size} bytes")
        await chunked.splitter.close()
        self._chunked = None  # from here on the writer belongs to _commit
        assert tx.queue_id is not None
        return await self._commit(chunked.writer, chunked.feed, self.state.envelope(),
                                  tx.queue_id, octets=chunked.octets)

    async def _open_chunked(self, tx: Transaction) -> _Chunked:
        writer = await self._open_writer(tx, self.state.envelope())
        feed = data_mod.Feed(writer)
        splitter = LineSplitter(feed, limit=self.settings.line_length_limit,
                                forbid_bare_lf=self.settings.forbid_bare_newline)
        return _Chunked(tx, writer, feed, splitter)

    async def consume(self, size: int, splitter: LineSplitter | None) -> str:
        """A chunk's octets, stored or skipped; a lost connection ends the session."""
        try:
            outcome = await receive_chunk(self._lines, size, splitter)
        except BaseException:
            self.drop_chunked()
            raise
        if outcome == EOF:
            self.drop_chunked()
            raise LostConnection
        return outcome

    def drop_chunked(self) -> None:
        """Abort the partial BDAT message, if any (its spool file goes)."""
        if self._chunked is not None:
            self._chunked.writer.abort()
            self._chunked = None

    def drop_stale_chunked(self) -> None:
        """RSET, HELO/EHLO or an internal error ended the BDAT message's transaction."""
        if self._chunked is not None and self.state.tx is not self._chunked.tx:
            self.drop_chunked()
