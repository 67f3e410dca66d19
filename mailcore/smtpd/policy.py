"""The SMTP dialogue without sockets: each command's checks and Postfix's reply to it.

Owns: the command table and its handlers (sequencing, limits, the reply to each command),
restriction calls at each stage (the facts they see, the defer_if_permit state carried
between stages, recording the transaction's access-table effects: HOLD, DISCARD, REDIRECT,
FILTER, PREPEND), and the reject/warn/hold log lines. The session state it works on lives
in state.py; the address arguments of MAIL/RCPT/VRFY and their ESMTP parameters (SIZE,
BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT) are parsed by arguments.py.
Every handler returns a ``Reply``; DATA returns a 354 and BDAT returns ``BDAT_GO`` and
leave reading the content to session.py. BDAT sequencing (RFC 3030, as Postfix): it needs
MAIL and an accepted RCPT like DATA, the data-stage restrictions run at the first chunk,
DATA and RCPT are refused once BDAT began, and after a failed chunk every further chunk of
the transaction gets the same refusal (session.py still consumes its octets).

Must not: read or write the network, sleep, or touch the queue (it asks the sink only for a
queue ID, and ``space_ok`` for queue_minfree).

Invariants: a transaction exists only between an accepted MAIL and its end (DATA done, RSET,
HELO/EHLO); every address goes through mailcore.address; replies carry enhanced status
codes; no reply contains exception text. Parameters read (through ``SmtpdSettings``):
myhostname, message_size_limit, smtpd_recipient_limit, smtpd_helo_required,
disable_vrfy_command, smtpd_discard_ehlo_keywords, smtputf8_enable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from mailcore.log import MailLog
from mailcore.restrictions import Facts, Verdict
from mailcore.smtpd.arguments import (
    MAX_ENVID,
    NOTIFY_WORDS,
    parse_mail_from,
    parse_rcpt_to,
    parse_vrfy,
)
from mailcore.smtpd.bdat import parse_bdat
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply
from mailcore.smtpd.state import (
    COMMAND_ORDER,
    Effects,
    SessionState,
    Transaction,
    disconnect_counts,
)

# Names defined in state.py and arguments.py stay importable from here, where they began.
__all__ = [
    "BDAT_GO", "BDAT_SYNTAX", "BYE", "COMMANDS", "COMMAND_ORDER", "INTERNAL", "JUNK_COMMANDS",
    "MAX_ENVID", "NEED_HELO", "NEED_MAIL", "NEED_RCPT", "NOTIFY_WORDS", "NOT_RECOGNIZED",
    "NO_SPACE", "NO_VALID_RCPT", "OK", "TOO_BIG", "TOO_MANY_RCPTS", "WRITE_ERROR", "Dialogue",
    "Effects", "Etrn", "Policy", "SessionState", "Transaction", "disconnect_counts",
]

JUNK_COMMANDS = frozenset({"NOOP", "VRFY", "ETRN", "RSET"})

OK = reply(250, "2.0.0", "Ok")
BYE = reply(221, "2.0.0", "Bye", close=True)
NOT_RECOGNIZED = reply(502, "5.5.2", "Error: command not recognized")
NEED_HELO = reply(503, "5.5.1", "Error: send HELO/EHLO first")
NEED_MAIL = reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = reply(503, "5.5.1", "Error: need RCPT command")
NO_VALID_RCPT = reply(554, "5.5.1", "Error: no valid recipients")
TOO_BIG = reply(552, "5.3.4", "Message size exceeds fixed limit")
NO_SPACE = reply(452, "4.3.1", "Insufficient system storage")
TOO_MANY_RCPTS = reply(452, "4.5.3", "Error: too many recipients")
INTERNAL = reply(451, "4.3.0", "Error: internal error")
WRITE_ERROR = reply(451, "4.3.0", "Error: queue file write error")
BDAT_SYNTAX = reply(501, "5.5.4", "Syntax: BDAT count [LAST]", close=True)
BDAT_GO = reply(250, "2.0.0", "Ok")  # not sent: tells session.py to store the chunk

# ETRN site -> True when the site is eligible (fast_flush_domains) and its deferred mail was
# scheduled, False when it is not eligible.
Etrn = Callable[[str], Awaitable[bool]]

class Policy(Protocol):
    """What restrictions.Restrictions offers smtpd (a fake in unit tests)."""

    async def check(self, facts: Facts) -> Verdict | None: ...


class Dialogue:
    """Command handlers of one session; ``handle(verb, arg)`` is the single entry point."""

    def __init__(self, settings: SmtpdSettings, state: SessionState, restrictions: Policy,
                 new_queue_id: Callable[[], str], space_ok: Callable[[int], Awaitable[bool]],
                 log: MailLog, *, input_pending: Callable[[], bool] = lambda: False,
                 etrn: Etrn | None = None):
        self.settings = settings
        self._etrn = etrn
        self.state = state
        self._restrictions = restrictions
        self._new_queue_id = new_queue_id
        self._space_ok = space_ok
        self._log = log
        self._input_pending = input_pending

    async def handle(self, verb: str, arg: str) -> Reply:
        handler = COMMANDS.get(verb)
        if handler is None:
            return NOT_RECOGNIZED
        return await handler(self, arg)

    # --- logging ------------------------------------------------------------------------
    def log_reject(self, stage: str, answer: Reply, recipient: str | None = None) -> None:
        self.log_event("reject", stage, answer.text, recipient)

    def log_event(self, whatsup: str, stage: str, text: str,
                  recipient: str | None = None) -> None:
        """Postfix's log_whatsup: ``QUEUEID: reject: RCPT from CLIENT: text; from=<…> …``."""
        state, tx = self.state, self.state.tx
        queue_id = tx.queue_id if tx and tx.queue_id else "NOQUEUE"
        what = [f"from=<{tx.sender}>"] if tx else []
        if recipient is not None:
            what.append(f"to=<{recipient}>")
        what.append(f"proto={'ESMTP' if state.esmtp else 'SMTP'}")
        if state.helo:
            what.append(f"helo=<{state.helo}>")
        self._log.info("smtpd", f"{queue_id}: {whatsup}: {stage} from {state.client.display}: "
                                f"{text}; {' '.join(what)}")

    async def _verdict(self, facts: Facts, where: str) -> Reply | None:
        """Ask the restrictions; apply the side effects; the refusal to send, if any."""
        verdict = await self._restrictions.check(facts)
        if verdict is None:
            return None
        recipient = facts.recipient if facts.stage == "rcpt" else None
        for event in verdict.events:
            if event.whatsup == "warning":
                self._log.warning("smtpd", event.text)
            else:
                self.log_event(event.whatsup, where, event.text, recipient)
        if facts.stage in ("connect", "helo", "mail"):
            self.state.deferrals[facts.stage] = verdict.deferral
        tx = self.state.tx
        if tx is not None and facts.sender is not None:
            tx.effects.add(verdict)
        if not verdict.refused:
            return None
        return Reply(verdict.code, (f"{verdict.dsn} {verdict.text}",))

    def _facts(self, stage: str, where: str, recipient: str | None = None) -> Facts:
        state, tx = self.state, self.state.tx
        earlier = {"helo": ("connect",), "mail": ("helo", "connect"),
                   "rcpt": ("mail", "helo", "connect")}.get(stage, ())
        prior = next((state.deferrals[s] for s in earlier if state.deferrals.get(s)), None)
        return Facts(stage, replace(state.client, helo=state.helo), helo=state.helo,
                     sender=tx.sender if tx else None, recipient=recipient, where=where,
                     protocol="ESMTP" if state.esmtp else "SMTP",
                     queue_id=tx.queue_id if tx else None,
                     rcpt_count=len(tx.recipients) if tx else 0, size=tx.size if tx else 0,
                     pipelined=self._input_pending(),
                     discard=tx.effects.discard if tx else False, prior_deferral=prior)

    async def connect(self) -> Reply | None:
        """The connect-stage restrictions; a refusal is sent instead of the banner."""
        answer = await self._verdict(self._facts("connect", "CONNECT"), "CONNECT")
        if answer is not None:
            self.log_reject("CONNECT", answer)
        return answer

    # --- HELO / EHLO ------------------------------------------------------------------
    async def helo(self, arg: str) -> Reply:
        return await self._hello(arg, esmtp=False)

    async def ehlo(self, arg: str) -> Reply:
        return await self._hello(arg, esmtp=True)

    async def _hello(self, arg: str, *, esmtp: bool) -> Reply:
        name = arg.strip()
        if not name:
            return reply(501, "5.5.4", f"Syntax: {'EHLO' if esmtp else 'HELO'} hostname")
        self.state.tx = None  # RFC 5321 4.1.4: HELO/EHLO resets any transaction
        self.state.helo, self.state.esmtp = name, esmtp
        where = "EHLO" if esmtp else "HELO"
        answer = await self._verdict(self._facts("helo", where), where)
        if answer is not None:
            self.log_reject(where, answer)
            return answer
        host = self.settings.myhostname
        if not esmtp:
            return Reply(250, (host,))
        return Reply(250, (host, *self.ehlo_keywords()))

    def ehlo_keywords(self) -> list[str]:
        s = self.settings
        words = ["PIPELINING",
                 f"SIZE {s.message_size_limit}" if s.message_size_limit else "SIZE"]
        if not s.disable_vrfy:
            words.append("VRFY")
        words += ["ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]
        if s.smtputf8:
            words.append("SMTPUTF8")
        words.append("CHUNKING")
        return [w for w in words if w.split()[0] not in s.discard_ehlo_keywords]

    # --- MAIL -------------------------------------------------------------------------
    async def mail(self, arg: str) -> Reply:
        state, s = self.state, self.settings
        if s.helo_required and not state.helo:
            return NEED_HELO
        if state.tx is not None:
            return reply(503, "5.5.1", "Error: nested MAIL command")
        if arg[:5].upper() != "FROM:":
            return reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        tx = parse_mail_from(arg[5:], s)
        if isinstance(tx, Reply):
            return tx
        if s.message_size_limit and tx.size > s.message_size_limit:
            self.log_reject("MAIL", TOO_BIG)
            return TOO_BIG
        if not await self._space_ok(tx.size):
            self.log_reject("MAIL", NO_SPACE)
            return NO_SPACE
        state.tx = tx
        answer = await self._verdict(self._facts("mail", "MAIL"), "MAIL")
        if answer is not None:
            self.log_reject("MAIL", answer)
            state.tx = None
            return answer
        return reply(250, "2.1.0", "Ok")

    # --- RCPT -------------------------------------------------------------------------
    async def rcpt(self, arg: str) -> Reply:
        state, s, tx = self.state, self.settings, self.state.tx
        if tx is None:
            return NEED_MAIL
        if tx.bdat:
            return reply(503, "5.5.1", "Error: RCPT command after BDAT")
        if arg[:3].upper() != "TO:":
            return reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
        if s.recipient_limit and len(tx.recipients) >= s.recipient_limit:
            return TOO_MANY_RCPTS
        parsed = parse_rcpt_to(arg[3:], s, smtputf8=tx.smtputf8)
        if isinstance(parsed, Reply):
            return parsed
        recipient = parsed.address
        answer = await self._verdict(self._facts("rcpt", "RCPT", recipient), "RCPT")
        if answer is not None:
            self.log_reject("RCPT", answer, recipient)
            return answer
        if tx.queue_id is None:
            tx.queue_id = self._new_queue_id()
            self._log.info("smtpd", f"{tx.queue_id}: client={state.client.display}")
        tx.recipients.append(parsed)
        return reply(250, "2.1.5", "Ok")

    # --- DATA (the content itself is read by session.py) ------------------------------
    async def data(self, arg: str) -> Reply:
        tx = self.state.tx
        if arg.strip():
            return reply(501, "5.5.4", "Syntax: DATA")
        if tx is None:
            return NEED_RCPT
        if tx.bdat:
            return reply(503, "5.5.1", "Error: DATA command after BDAT")
        if not tx.recipients:
            return NO_VALID_RCPT
        answer = await self._verdict(self._facts("data", "DATA"), "DATA")
        if answer is not None:
            self.log_reject("DATA", answer)
            return answer
        return Reply(354, ("End data with <CR><LF>.<CR><LF>",))

    async def bdat(self, arg: str) -> Reply:
        """May this BDAT chunk be stored? ``BDAT_GO``, or the refusal to send once its
        octets are consumed (a syntax error closes the session: the chunk size is unknown,
        so its octets could only be misread as commands)."""
        command = parse_bdat(arg)
        if command is None:
            return BDAT_SYNTAX
        if "CHUNKING" in self.settings.discard_ehlo_keywords:
            return reply(502, "5.5.1", "Error: command not implemented")
        tx = self.state.tx
        if tx is None:
            return NEED_RCPT
        if not tx.recipients:
            return NO_VALID_RCPT
        if tx.bdat_failed is not None:
            return tx.bdat_failed
        if not tx.bdat:
            tx.bdat = True
            # The data stage, as if DATA: "DATA" for the restrictions' sake (reject_multi_
            # recipient_bounce), never "pipelined" (the chunk octets always follow at once,
            # and Postfix's reject_unauth_pipelining does not act on BDAT).
            facts = replace(self._facts("data", "DATA"), pipelined=False)
            answer = await self._verdict(facts, "BDAT")
            if answer is not None:
                self.log_reject("BDAT", answer)
                tx.bdat_failed = answer
                return answer
        return BDAT_GO

    async def end_of_data(self) -> Reply | None:
        answer = await self._verdict(self._facts("end_of_data", "END-OF-MESSAGE"),
                                     "END-OF-MESSAGE")
        if answer is not None:
            self.log_reject("END-OF-MESSAGE", answer)
        return answer

    # --- the rest ---------------------------------------------------------------------
    async def rset(self, arg: str) -> Reply:
        if arg.strip():
            return reply(501, "5.5.4", "Syntax: RSET")
        self.state.tx = None
        return OK

    async def noop(self, arg: str) -> Reply:
        return OK

    async def quit(self, arg: str) -> Reply:
        return BYE

    async def vrfy(self, arg: str) -> Reply:
        if self.settings.disable_vrfy:
            return reply(502, "5.5.1", "VRFY command is disabled")
        address = parse_vrfy(arg, self.settings)
        if isinstance(address, Reply):
            return address
        # Postfix answers 252 unless a recipient check refuses: say nothing about mailboxes.
        return reply(252, "2.0.0", address)

    async def etrn(self, arg: str) -> Reply:
        if self.settings.helo_required and not self.state.helo:
            return NEED_HELO
        if self.state.tx is not None:
            return reply(503, "5.5.1", "Error: MAIL transaction in progress")
        site = arg.strip().lstrip("@")
        if not site or site.startswith("#") or " " in site:
            return reply(500, "5.5.4", "Syntax: ETRN domain")
        if self._etrn is None:
            return reply(458, "4.3.0", "Unable to queue messages")
        try:
            eligible = await self._etrn(site)
        except Exception as exc:  # the flush must never cost the session
            self._log.warning("smtpd", f"ETRN {site}: {exc}")
            return reply(458, "4.3.0", "Unable to queue messages")
        if not eligible:
            return reply(459, "4.3.0", f"<{site}>: service unavailable")
        return reply(250, "2.0.0", "Queuing started")


COMMANDS: dict[str, Callable[[Dialogue, str], Awaitable[Reply]]] = {
    "HELO": Dialogue.helo, "EHLO": Dialogue.ehlo, "MAIL": Dialogue.mail,
    "RCPT": Dialogue.rcpt, "DATA": Dialogue.data, "RSET": Dialogue.rset,
    "NOOP": Dialogue.noop, "QUIT": Dialogue.quit, "VRFY": Dialogue.vrfy,
    "ETRN": Dialogue.etrn, "BDAT": Dialogue.bdat,
}
