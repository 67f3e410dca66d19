"""The SMTP dialogue without sockets: each command's checks and Postfix's reply to it.

Owns: per-session state (HELO name, the mail transaction, error and junk counters, the
per-command counts of the disconnect log line), MAIL/RCPT parameter handling (SIZE, BODY,
SMTPUTF8, RET, ENVID, NOTIFY, ORCPT), sequencing, restriction calls at each stage (the facts
they see, the defer_if_permit state carried between stages, the transaction's access-table
effects: HOLD, DISCARD, REDIRECT, FILTER, PREPEND), and the reject/warn/hold log lines.
Every handler returns a ``Reply``; DATA returns a 354 and BDAT returns ``BDAT_GO`` and
leave reading the content to session.py. BDAT sequencing (RFC 3030, as Postfix): it needs
MAIL and an accepted RCPT like DATA, the data-stage restrictions run at the first chunk,
DATA and RCPT are refused once BDAT began, and after a failed chunk every further chunk of
the transaction gets the same refusal (session.py still consumes its octets).

Must not: read or write the network, sleep, or touch the queue (it asks the sink only for a
queue ID, and ``space_ok`` for queue_minfree).

Invariants: a transaction exists only between an accepted MAIL and its end (DATA done, RSET,
HELO/EHLO); every address goes through mailcore.address; replies carry enhanced status
codes; no reply contains exception text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from mailcore.address import (
    AddressError,
    is_hostile_local,
    parse_mail_params,
    parse_orcpt,
    parse_path,
    split_path_and_params,
    xtext_decode,
)
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope, EnvelopeRecipient
from mailcore.restrictions import Deferral, Facts, Verdict
from mailcore.smtpd.bdat import parse_bdat
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply

COMMAND_ORDER = ("helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset",
                 "noop", "vrfy", "etrn", "quit", "unknown")
JUNK_COMMANDS = frozenset({"NOOP", "VRFY", "ETRN", "RSET"})
MAX_ENVID = 100  # RFC 3461 4.4
NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})

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


@dataclass
class Effects:
    """What access-table actions asked of cleanup for this transaction (Postfix keeps them
    until the transaction ends, whether or not the command that set them was accepted)."""

    hold: bool = False
    discard: bool = False
    redirect: str | None = None
    filter: str | None = None
    prepend: list[str] = field(default_factory=list)

    def add(self, verdict: Verdict) -> None:
        self.hold = self.hold or verdict.hold
        self.discard = self.discard or verdict.discard
        self.redirect = verdict.redirect or self.redirect
        self.filter = verdict.filter or self.filter
        self.prepend.extend(h for h in verdict.prepend if h not in self.prepend)


@dataclass
class Transaction:
    sender: str
    size: int = 0
    body: str = ""
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    recipients: list[EnvelopeRecipient] = field(default_factory=list)
    queue_id: str | None = None
    started: float = field(default_factory=time.time)
    effects: Effects = field(default_factory=Effects)
    bdat: bool = False  # a BDAT chunk was sent for this transaction (DATA and RCPT refused)
    bdat_failed: Reply | None = None  # the refusal every further chunk gets


@dataclass
class SessionState:
    client: ClientInfo
    helo: str = ""
    esmtp: bool = False
    tx: Transaction | None = None
    errors: int = 0
    junk: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)
    # defer_if_permit left by the connect, HELO and MAIL stages (smtpd_delay_reject = no)
    deferrals: dict[str, Deferral | None] = field(default_factory=dict)

    def count(self, name: str, ok: bool) -> None:
        ok_total = self.counts.setdefault(name, [0, 0])
        ok_total[0] += int(ok)
        ok_total[1] += 1

    def envelope(self) -> Envelope:
        tx = self.tx
        assert tx is not None
        protocol = ("UTF8" if tx.smtputf8 else "") + ("ESMTP" if self.esmtp else "SMTP")
        return Envelope(
            sender=tx.sender, recipients=tuple(tx.recipients),
            client=replace(self.client, helo=self.helo, protocol=protocol),
            arrival_time=tx.started, ret=tx.ret, envid=tx.envid, body_type=tx.body,
            smtputf8=tx.smtputf8,
        )


def disconnect_counts(state: SessionState) -> str:
    """Postfix 3.x ``ehlo=1 mail=1 rcpt=0/1 … commands=3/4``."""
    parts, ok_sum, total_sum = [], 0, 0
    for name in COMMAND_ORDER:
        if name in state.counts:
            ok, total = state.counts[name]
            parts.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
            ok_sum, total_sum = ok_sum + ok, total_sum + total
    parts.append(f"commands={ok_sum}" if ok_sum == total_sum else
                 f"commands={ok_sum}/{total_sum}")
    return " ".join(parts)


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
        try:
            path, params_text = split_path_and_params(arg[5:].lstrip(" "), for_sender=True)
            params = parse_mail_params(params_text)
            tx = Transaction(sender="")
            problem = self._mail_params(params, tx)
            if problem is not None:
                return problem
            address = parse_path(path, allow_empty=True, smtputf8=tx.smtputf8,
                                 for_sender=True, allow_bare_local=not s.strict_rfc821,
                                 allow_unbracketed=not s.strict_rfc821)
        except AddressError as err:
            return Reply(err.code, (f"{err.status} {err.text}",))
        tx.sender = address.text if address is not None else ""
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

    def _mail_params(self, params: dict[str, str | None], tx: Transaction) -> Reply | None:
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 18:
                    return reply(501, "5.5.4", "Bad message size syntax")
                tx.size = int(value)
            elif key == "BODY":
                body = (value or "").upper()
                if body not in ("7BIT", "8BITMIME"):
                    return reply(501, "5.5.4", "Unsupported BODY parameter")
                tx.body = body
            elif key == "SMTPUTF8" and self.settings.smtputf8 and value is None:
                tx.smtputf8 = True
            elif key == "RET":
                ret = (value or "").upper()
                if ret not in ("FULL", "HDRS"):
                    return reply(501, "5.5.4", "Bad RET parameter syntax")
                tx.ret = ret
            elif key == "ENVID":
                envid = xtext_decode(value or "")
                if not envid or len(envid) > MAX_ENVID or not all(
                        " " <= c <= "~" for c in envid):
                    return reply(501, "5.5.4", "Bad ENVID parameter syntax")
                tx.envid = envid
            else:
                return reply(555, "5.5.4", f"Unsupported option: {key}")
        return None

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
        try:
            path, params_text = split_path_and_params(arg[3:].lstrip(" "))
            notify, orcpt, problem = self._rcpt_params(parse_mail_params(params_text))
            if problem is not None:
                return problem
            address = parse_path(path, allow_empty=False, smtputf8=tx.smtputf8,
                                 allow_bare_postmaster=True,
                                 allow_bare_local=not s.strict_rfc821,
                                 allow_unbracketed=not s.strict_rfc821)
        except AddressError as err:
            return Reply(err.code, (f"{err.status} {err.text}",))
        assert address is not None
        if is_hostile_local(address.local):
            return reply(501, "5.1.3", "Bad recipient address syntax")
        recipient = address.text
        answer = await self._verdict(self._facts("rcpt", "RCPT", recipient), "RCPT")
        if answer is not None:
            self.log_reject("RCPT", answer, recipient)
            return answer
        if tx.queue_id is None:
            tx.queue_id = self._new_queue_id()
            self._log.info("smtpd", f"{tx.queue_id}: client={state.client.display}")
        original = path[1:-1] if path.startswith("<") else path
        tx.recipients.append(EnvelopeRecipient(recipient, original, notify, orcpt))
        return reply(250, "2.1.5", "Ok")

    def _rcpt_params(self, params: dict[str, str | None]
                     ) -> tuple[str | None, str | None, Reply | None]:
        notify = orcpt = None
        for key, value in params.items():
            if key == "NOTIFY":
                words = (value or "").upper().split(",")
                if not (words == ["NEVER"] or (words and set(words) <= NOTIFY_WORDS
                                               and len(set(words)) == len(words))):
                    return None, None, reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
                notify = ",".join(words)
            elif key == "ORCPT":
                addr_type, decoded = parse_orcpt(value or "")
                orcpt = f"{addr_type};{decoded}"
            else:
                return None, None, reply(555, "5.5.4", f"Unsupported option: {key}")
        return notify, orcpt, None

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
        text = arg.strip()
        if not text:
            return reply(501, "5.5.4", "Syntax: VRFY address")
        try:
            path = text if text.startswith("<") else f"<{text}>"
            address = parse_path(path, allow_empty=False, smtputf8=self.settings.smtputf8,
                                 allow_bare_local=True)
        except AddressError as err:
            return Reply(err.code, (f"{err.status} {err.text}",))
        assert address is not None
        # Postfix answers 252 unless a recipient check refuses: say nothing about mailboxes.
        return reply(252, "2.0.0", address.text)

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
