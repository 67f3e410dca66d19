"""One SMTP session on one connection: the read-dispatch-reply loop.

Owns: reading command lines (CRLF only, bounded length), timeouts (smtpd_timeout for each
network wait, smtpd_session_time_limit for the whole session), error and junk counting with
smtpd_error_sleep_time, pipelining (replies are flushed only when no more input is
buffered), the command-level flow of DATA and BDAT (the go-ahead, the reply to each chunk,
the LAST chunk ending the transaction; receiving and committing the content is
transfer.py's), and the connect / disconnect / timeout / lost-connection / bare-LF log
lines.

Must not: parse addresses or decide policy (policy.py does), or write to the queue other
than through the sink (transfer.py does).

Invariants: every network wait sits under ``asyncio.timeout_at``; CancelledError is never
swallowed; a client never sees exception text (internal errors answer 451 4.3.0); a
partial BDAT message is aborted when its transaction ends by RSET, HELO/EHLO, an error, or
the end of the session; the octets of every syntactically valid BDAT chunk are consumed,
refused or not, and never read as commands. Parameters read (through ``SmtpdSettings``):
smtpd_timeout, smtpd_session_time_limit, smtpd_soft_error_limit, smtpd_hard_error_limit,
smtpd_error_sleep_time, smtpd_junk_command_limit, line_length_limit,
smtpd_forbid_bare_newline, smtpd_peername_lookup, smtpd_banner, myhostname.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from mailcore.dns import ClientNames
from mailcore.log import MailLog
from mailcore.model import ClientInfo
from mailcore.smtpd.bdat import ChunkReader, parse_bdat
from mailcore.smtpd.lines import BARE_LF, CUT, EOF
from mailcore.smtpd.policy import (
    BDAT_GO,
    COMMANDS,
    INTERNAL,
    JUNK_COMMANDS,
    Dialogue,
    Etrn,
    Policy,
    SessionState,
    disconnect_counts,
)
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply
from mailcore.smtpd.transfer import LostConnection, MessageSink, Transfer

# MessageSink is defined in transfer.py and stays importable from here, where it began.
__all__ = ["MessageSink", "NameResolver", "Session", "Stream"]


class NameResolver(Protocol):
    async def client_name(self, address: str) -> ClientNames: ...


class Stream(Protocol):
    """The byte stream of one connection (asyncio StreamReader + StreamWriter parts)."""

    async def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class _Closing(Exception):
    """The session ends after a reply that says so (421, 521, 221)."""


class Session:
    def __init__(self, settings: SmtpdSettings, stream: Stream, client: ClientInfo, *,
                 sink: MessageSink, restrictions: Policy, resolver: NameResolver | None,
                 log: MailLog, space_ok: Callable[[int], Awaitable[bool]],
                 etrn: Etrn | None = None) -> None:
        self.settings = settings
        self._stream = stream
        self._resolver = resolver
        self._log = log
        self.state = SessionState(client)
        self._lines = ChunkReader(self._read)
        self.dialogue = Dialogue(settings, self.state, restrictions, sink.new_queue_id,
                                 space_ok, log, input_pending=lambda: self._lines.pending,
                                 etrn=etrn)
        self._transfer = Transfer(settings, self.state, self.dialogue, sink, self._lines, log,
                                  send=self._send, bare_newline=self._bare_newline)
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
        except (LostConnection, ConnectionError):
            self._log.info("smtpd", f"lost connection after {self._last} from "
                                    f"{self.state.client.display}")
        finally:
            self._transfer.drop_chunked()
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
            raise LostConnection
        if ending == BARE_LF and s.forbid_bare_newline:
            await self._bare_newline()
        if ending == CUT:
            while ending == CUT:
                _, ending = await self._lines.next(s.command_limit)
            if ending == EOF:
                raise LostConnection
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
        self._transfer.drop_stale_chunked()
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
        final = await self._transfer.data(answer)
        self.state.tx = None
        self._finish_command("DATA", final)
        await self._send(final)

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
            answer = await self._transfer.store_chunk(command, tx)
        else:
            await self._transfer.consume(command.size, None)
            if tx is not None and tx.bdat and tx.bdat_failed is None:
                tx.bdat_failed = answer
        if tx is not None and tx.bdat and (command.last or tx.bdat_failed is not None):
            self._transfer.drop_chunked()
            if command.last and self.state.tx is tx:
                self.state.tx = None  # RFC 3030: the LAST chunk ends the transaction
        self._transfer.drop_stale_chunked()
        self._finish_command("BDAT", answer)
        await self._send(answer)
