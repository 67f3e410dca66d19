"""One SMTP session on one connection: the read-dispatch-reply loop and the DATA path.

Owns: reading command lines (CRLF only, bounded length), timeouts (smtpd_timeout for each
network wait, smtpd_session_time_limit for the whole session), error and junk counting with
smtpd_error_sleep_time, pipelining (replies are flushed only when no more input is
buffered), receiving DATA or BDAT chunks into the sink's MessageWriter (with the
transaction's access-table PREPEND headers first and its HOLD/DISCARD/REDIRECT/FILTER
effects handed to cleanup with the finished message), the durable 250 (sent only after
``sink.enqueue`` returned; for BDAT, the reply to the LAST chunk), and the connect /
disconnect / timeout / lost-connection log lines.

Must not: parse addresses or decide policy (policy.py does), or write to the queue other
than through the sink.

Invariants: every network wait sits under ``asyncio.timeout_at``; CancelledError is never
swallowed; a client never sees exception text (internal errors answer 451 4.3.0); a
MessageWriter that was opened is either enqueued or aborted (a partial BDAT message when
its transaction ends by RSET, HELO/EHLO, an error, or the end of the session); the octets
of every syntactically valid BDAT chunk are consumed, refused or not, and never read as
commands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from mailcore.cleanup import CleanedMessage, CleanupReject, MessageWriter, received_header
from mailcore.dns import ClientNames
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope
from mailcore.queue import QueueFullError, QueueWriteError
from mailcore.smtpd import data as data_mod
from mailcore.smtpd.bdat import BdatCommand, ChunkReader, LineSplitter, parse_bdat, receive_chunk
from mailcore.smtpd.lines import BARE_LF, CUT, EOF
from mailcore.smtpd.policy import (
    BDAT_GO,
    COMMANDS,
    INTERNAL,
    JUNK_COMMANDS,
    NO_SPACE,
    TOO_BIG,
    WRITE_ERROR,
    Dialogue,
    Effects,
    Etrn,
    Policy,
    SessionState,
    Transaction,
    disconnect_counts,
)
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply


class MessageSink(Protocol):
    """Where accepted messages go: cleanup.Cleanup (the queue) or the maildrop writer of
    ``sendmail -bs``. ``enqueue`` returns the queue ID only once the message is durable."""

    def new_queue_id(self) -> str: ...

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: ClientInfo | None = None,
                   recipient: str = "") -> MessageWriter: ...

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str: ...


class NameResolver(Protocol):
    async def client_name(self, address: str) -> ClientNames: ...


class Stream(Protocol):
    """The byte stream of one connection (asyncio StreamReader + StreamWriter parts)."""

    async def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


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


class _LostConnection(Exception):
    pass


class _Closing(Exception):
    """The session ends after a reply that says so (421, 521, 221)."""


class Session:
    def __init__(self, settings: SmtpdSettings, stream: Stream, client: ClientInfo, *,
                 sink: MessageSink, restrictions: Policy, resolver: NameResolver | None,
                 log: MailLog, space_ok: Callable[[int], Awaitable[bool]],
                 etrn: Etrn | None = None) -> None:
        self.settings = settings
        self._stream = stream
        self._sink = sink
        self._resolver = resolver
        self._log = log
        self.state = SessionState(client)
        self._lines = ChunkReader(self._read)
        self._chunked: _Chunked | None = None
        self.dialogue = Dialogue(settings, self.state, restrictions, sink.new_queue_id,
                                 space_ok, log, input_pending=lambda: self._lines.pending,
                                 etrn=etrn)
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + settings.session_time_limit
        self._last = "CONNECT"

    # --- I/O with deadlines -------------------------------------------------------------
    def _io_deadline(self) -> float:
        return min(self._loop.time() + self.settings.timeout, self._deadline)

    async def _read(self, n: int) -> bytes:
        await self._flush()  # nothing more is buffered: the client waits for our replies
        async with asyncio.timeout_at(self._io_deadline()):
            return await self._stream.read(n)

    async def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        self._stream.write(data)
        async with asyncio.timeout_at(self._io_deadline()):
            await self._stream.drain()

    async def _send(self, answer: Reply) -> None:
        if self.state.errors >= self.settings.soft_error_limit > 0:
            await self._flush()
            async with asyncio.timeout_at(self._deadline):
                await asyncio.sleep(self.settings.error_sleep_time)
        self._out.append(answer.render())
        if answer.close:
            await self._flush()
            raise _Closing

    # --- the session ------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._converse()
        except _Closing:
            pass
        except TimeoutError:
            await self._timed_out()
        except (_LostConnection, ConnectionError):
            self._log.info("smtpd", f"lost connection after {self._last} from "
                                    f"{self.state.client.display}")
        finally:
            self._drop_chunked()
            self._log.info("smtpd", f"disconnect from {self.state.client.display} "
                                    f"{disconnect_counts(self.state)}")
            self._stream.close()

    async def _timed_out(self) -> None:
        whole = self._loop.time() >= self._deadline - 0.01
        what = "session time limit exceeded" if whole else "timeout"
        self._log.info("smtpd", f"{what} after {self._last} from {self.state.client.display}")
        self._out.append(reply(421, "4.4.2",
                               f"{self.settings.myhostname} Error: timeout exceeded").render())
        with contextlib.suppress(ConnectionError, TimeoutError):
            self._stream.write(b"".join(self._out))
            self._out.clear()
            async with asyncio.timeout(1):
                await self._stream.drain()

    async def _converse(self) -> None:
        await self._lookup_names()
        self._log.info("smtpd", f"connect from {self.state.client.display}")
        refused = await self.dialogue.connect()
        if refused is not None:
            await self._send(replace(refused, close=True))
        await self._send(Reply(220, (self.settings.banner,)))
        while True:
            if self.state.errors >= self.settings.hard_error_limit > 0:
                self._log.info("smtpd", f"too many errors after {self._last} from "
                                        f"{self.state.client.display}")
                await self._send(reply(421, "4.7.0", f"{self.settings.myhostname} "
                                                     "Error: too many errors", close=True))
            await self._command()

    async def _lookup_names(self) -> None:
        client = self.state.client
        if not (self.settings.peername_lookup and self._resolver and client.address):
            return
        async with asyncio.timeout_at(self._deadline):
            names = await self._resolver.client_name(client.address)
        if names.reverse_name != "unknown" and names.name == "unknown" and names.detail:
            self._log.warning("smtpd", names.detail)
        self.state.client = replace(client, name=names.name, reverse_name=names.reverse_name)

    async def _command(self) -> None:
        s = self.settings
        data, ending = await self._lines.next(s.command_limit)
        if ending == EOF:
            raise _LostConnection
        if ending == BARE_LF and s.forbid_bare_newline:
            await self._bare_newline()
        if ending == CUT:
            while ending == CUT:
                _, ending = await self._lines.next(s.command_limit)
            if ending == EOF:
                raise _LostConnection
            self.state.errors += 1
            await self._send(reply(500, "5.5.2", "Error: line too long"))
            return
        verb, _, arg = data.decode("utf-8", "surrogateescape").partition(" ")
        verb = verb.upper()
        if not verb:
            self.state.errors += 1
            await self._send(reply(500, "5.5.2", "Error: bad syntax"))
            return
        self._last = verb if verb in COMMANDS else "UNKNOWN"
        if verb in JUNK_COMMANDS:
            self.state.junk += 1
            if self.state.junk > s.junk_command_limit:
                self.state.errors += 1
        if verb == "DATA":
            await self._data(arg)
            return
        if verb == "BDAT":
            await self._bdat(arg)
            return
        answer = await self._guarded(verb, arg)
        self._drop_stale_chunked()
        self._finish_command(verb, answer)
        await self._send(answer)

    async def _guarded(self, verb: str, arg: str) -> Reply:
        try:
            return await self.dialogue.handle(verb, arg)
        except Exception as exc:  # policy or table trouble: a 4xx, never exception text
            self._log.error("smtpd", f"{self.state.client.display}: {verb}: "
                                     f"{type(exc).__name__}: {exc}")
            self.state.tx = None
            return INTERNAL

    def _finish_command(self, verb: str, answer: Reply) -> None:
        name = verb.lower() if verb in COMMANDS else "unknown"
        self.state.count(name, not answer.is_error)
        if answer.is_error:
            self.state.errors += 1

    async def _bare_newline(self) -> None:
        self._log.info("smtpd", f"bare <LF> received after {self._last} from "
                                f"{self.state.client.display}")
        await self._send(reply(521, "5.5.2", f"{self.settings.myhostname} "
                                             "Error: bare <LF> received", close=True))

    # --- DATA -------------------------------------------------------------------------
    async def _data(self, arg: str) -> None:
        answer = await self._guarded("DATA", arg)
        if answer.code != 354:
            self._finish_command("DATA", answer)
            await self._send(answer)
            return
        tx, envelope = self.state.tx, self.state.envelope()
        assert tx is not None and tx.queue_id is not None
        writer = await self._open_writer(tx, envelope)
        feed = data_mod.Feed(writer)
        try:
            await self._send(answer)
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
                raise _LostConnection
            await self._bare_newline()
        final = await self._commit(writer, feed, envelope, tx.queue_id)
        self.state.tx = None
        self._finish_command("DATA", final)
        await self._send(final)

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
    async def _bdat(self, arg: str) -> None:
        command = parse_bdat(arg)
        answer = await self._guarded("BDAT", arg)
        if command is None:
            tx = self.state.tx
            shown = "".join(c if c.isprintable() else "?" for c in arg[:100])
            self._log.warning("smtpd", f"{tx.queue_id if tx and tx.queue_id else 'NOQUEUE'}: "
                                       f"malformed BDAT command syntax from "
                                       f"{self.state.client.display}: BDAT {shown}")
            self._finish_command("BDAT", answer)
            await self._send(answer)  # closes: the octets that follow cannot be delimited
            return
        tx = self.state.tx
        if answer is BDAT_GO and tx is not None:
            answer = await self._store_chunk(command, tx)
        else:
            await self._consume(command.size, None)
            if tx is not None and tx.bdat and tx.bdat_failed is None:
                tx.bdat_failed = answer
        if tx is not None and tx.bdat and (command.last or tx.bdat_failed is not None):
            self._drop_chunked()
            if command.last and self.state.tx is tx:
                self.state.tx = None  # RFC 3030: the LAST chunk ends the transaction
        self._drop_stale_chunked()
        self._finish_command("BDAT", answer)
        await self._send(answer)

    async def _store_chunk(self, command: BdatCommand, tx: Transaction) -> Reply:
        chunked = self._chunked
        if chunked is None:
            try:
                chunked = self._chunked = await self._open_chunked(tx)
            except Exception as exc:  # the sink's trouble: a 4xx, never exception text
                self._log.error("smtpd", f"{tx.queue_id}: BDAT: {type(exc).__name__}: {exc}")
                await self._consume(command.size, None)
                tx.bdat_failed = INTERNAL
                return INTERNAL
        limit = self.settings.message_size_limit
        if limit and chunked.octets + command.size > limit:
            await self._consume(command.size, None)
            self.dialogue.log_reject("BDAT", TOO_BIG)
            tx.bdat_failed = TOO_BIG
            return TOO_BIG
        if await self._consume(command.size, chunked.splitter) == BARE_LF:
            self._drop_chunked()
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

    async def _consume(self, size: int, splitter: LineSplitter | None) -> str:
        """A chunk's octets, stored or skipped; a lost connection ends the session."""
        try:
            outcome = await receive_chunk(self._lines, size, splitter)
        except BaseException:
            self._drop_chunked()
            raise
        if outcome == EOF:
            self._drop_chunked()
            raise _LostConnection
        return outcome

    def _drop_chunked(self) -> None:
        """Abort the partial BDAT message, if any (its spool file goes)."""
        if self._chunked is not None:
            self._chunked.writer.abort()
            self._chunked = None

    def _drop_stale_chunked(self) -> None:
        """RSET, HELO/EHLO or an internal error ended the BDAT message's transaction."""
        if self._chunked is not None and self.state.tx is not self._chunked.tx:
            self._drop_chunked()
