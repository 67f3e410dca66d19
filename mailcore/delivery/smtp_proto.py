"""One SMTP session with one server: greeting, EHLO/HELO, MAIL, RCPT, DATA, the dot, QUIT.

Owns: the order of the dialogue and the meaning of each reply at each stage, following
Postfix's smtp_proto.c: a non-2xx greeting (5xx counted as 4xx under smtp_skip_5xx_greeting)
or a 421/failed HELO skips the server; EHLO failing otherwise falls back to HELO; SIZE,
SMTPUTF8 and DSN decide what goes into MAIL/RCPT; with PIPELINING, MAIL, every RCPT and
DATA go out in one write; a rejected MAIL, DATA or end-of-data fails every recipient the
server accepted; a broken or timed-out stream fails the session with Postfix's "lost
connection with … while …" / "conversation with … timed out while …" wording.

Must not: look up DNS or choose servers (smtp.py), or decide retry policy (smtp_trouble.py).
Invariants: every wait has its stage's timeout; reply text is sanitised before it is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from mailcore.delivery.mx import Target
from mailcore.delivery.smtp_trouble import Attempt, Failure
from mailcore.delivery.smtp_wire import (
    Features,
    ServerReply,
    StreamError,
    Wire,
    command,
    data_stream,
    mail_command,
    parse_ehlo,
    rcpt_command,
)
from mailcore.model import DELEGATED, DeliveryRequest, RecipientRef
from mailcore.status import default_dsn

STAGE_GREETING = "receiving the initial server greeting"
STAGE_EHLO = "performing the EHLO handshake"
STAGE_HELO = "performing the HELO handshake"
STAGE_MAIL = "sending MAIL FROM"
STAGE_RCPT = "sending RCPT TO"
STAGE_DATA = "sending DATA command"
STAGE_BODY = "sending message body"
STAGE_DOT = "sending end of data -- message may be sent more than once"


@dataclass(frozen=True)
class Timeouts:
    connect: float
    helo: float
    mail: float
    rcpt: float
    data_init: float
    data_xfer: float
    data_done: float
    quit: float


@dataclass(frozen=True)
class Session:
    """Everything one session needs besides the connection."""

    wire: Wire
    target: Target
    attempt: Attempt
    request: DeliveryRequest
    timeouts: Timeouts
    helo_name: str
    myhostname: str
    nexthop: str
    loop_detect: bool
    best_mx: bool
    skip_5xx_greeting: bool
    never_ehlo: bool
    needs_smtputf8: bool
    line_limit: int
    content: Callable[[], AsyncIterator[bytes]]  # the stored lines, opened on demand

    def said(self, reply: ServerReply, what: str) -> Failure:
        """A remote refusal as Postfix words it, with the reply's own status code."""
        dsn = reply.dsn or default_dsn(reply.code)
        reason = f"host {self.target.name_addr} said: {reply.text} (in reply to {what})"
        if dsn[:1] not in ("4", "5") or reply.code < 400:
            # A 2xx/3xx where a refusal was expected, or no reply code at all.
            dsn = "5.5.0" if 200 <= reply.code < 400 else "4.5.0"
            reason = "Protocol error: " + reason
        return Failure(dsn, reason, self.target.relay)

    def refused(self, reply: ServerReply) -> Failure:
        failure = self.said(reply, "")
        reason = f"host {self.target.name_addr} refused to talk to me: {reply.text}"
        return Failure(failure.dsn, reason, self.target.relay)

    def broken(self, error: StreamError, stage: str) -> Failure:
        name = self.target.name_addr
        text = (f"conversation with {name} timed out while {stage}" if error.timeout
                else f"lost connection with {name} while {stage}")
        return Failure("4.4.2", text, self.target.relay)


async def handshake(s: Session) -> Features | None:
    """Greeting and EHLO/HELO; None when the session failed (already reported)."""
    stage = STAGE_GREETING
    try:
        greeting = await s.wire.reply(s.timeouts.helo)
        if greeting.code // 100 != 2:
            failure = s.refused(greeting)
            if failure.dsn.startswith("5") and s.skip_5xx_greeting:
                failure = Failure("4" + failure.dsn[1:], failure.reason, failure.relay)
            s.attempt.bulk_fail(failure)
            return None
        features: Features | None = None
        if not s.never_ehlo:
            stage = STAGE_EHLO
            await s.wire.send(command(f"EHLO {s.helo_name}"), s.timeouts.helo)
            reply = await s.wire.reply(s.timeouts.helo)
            if reply.code == 421:
                s.attempt.bulk_fail(s.refused(reply))
                return None
            if reply.code // 100 == 2:
                features = parse_ehlo(reply)
        if features is None:
            stage = STAGE_HELO
            await s.wire.send(command(f"HELO {s.helo_name}"), s.timeouts.helo)
            reply = await s.wire.reply(s.timeouts.helo)
            if reply.code // 100 != 2:
                s.attempt.bulk_fail(s.refused(reply))
                return None
            features = Features()
    except StreamError as error:
        s.attempt.bulk_fail(s.broken(error, stage))
        return None
    return _check_features(s, features)


def _check_features(s: Session, features: Features) -> Features | None:
    if s.loop_detect and features.helo_name.lower() == s.myhostname.lower():
        s.attempt.bulk_fail(Failure("5.4.6" if s.best_mx else "4.4.6",
                                    f"mail for {s.nexthop} loops back to myself"))
        return None
    if s.needs_smtputf8 and not features.smtputf8:
        # Soft at a server that is not the last one, so a better server may still be found.
        dsn = "5.6.7" if s.attempt.final_server else "4.6.7"
        s.attempt.bulk_fail(Failure(
            dsn, "message requires SMTPUTF8, but no server was found that supports "
            f"SMTPUTF8. The last attempted server was {s.target.name_addr}"))
        return None
    return features


class _Progress:
    """Which stage a stream error happened in (the wording of the failure names it)."""

    def __init__(self) -> None:
        self.stage = STAGE_MAIL


async def transfer(s: Session, features: Features) -> None:
    """One mail transaction for the recipients not yet decided in this session."""
    request = s.request
    if 0 < features.size_limit < request.size:
        s.attempt.bulk_fail(Failure(
            "5.3.4", f"message size {request.size} exceeds size limit "
            f"{features.size_limit} of server {s.target.name_addr}"))
        return
    rcpts = s.attempt.unmarked()
    attrs = dict(request.attrs)
    s.attempt.setup_done()
    mail = mail_command(request.sender, features, size=request.size,
                        body_type=attrs.get("body_type", ""), envid=request.envid,
                        ret=request.ret, smtputf8=s.needs_smtputf8)
    commands = [command(mail)] + [command(rcpt_command(
        r.address, features, notify=r.notify, orcpt=r.orcpt, orig_rcpt=r.orig_rcpt))
        for r in rcpts]
    progress = _Progress()
    try:
        accepted = await _envelope(s, features, commands, rcpts, progress)
        if accepted is None or not await _data_command(s, features, accepted, progress):
            await _quit(s)
            return
        progress.stage = STAGE_BODY
        async for chunk in data_stream(s.content(), s.line_limit):
            await s.wire.send(chunk, s.timeouts.data_xfer)
        progress.stage = STAGE_DOT
        reply = await s.wire.reply(s.timeouts.data_done)
    except StreamError as error:
        s.attempt.bulk_fail(s.broken(error, progress.stage))
        return
    _end_of_data(s, reply, accepted, features)
    await _quit(s)


async def _envelope(s: Session, features: Features, commands: list[bytes],
                    rcpts: list[RecipientRef], progress: _Progress
                    ) -> list[RecipientRef] | None:
    """MAIL and RCPT (and a pipelined DATA); the accepted recipients, or None to give up."""
    pipelined = features.pipelining
    if pipelined:
        await s.wire.send(b"".join(commands) + command("DATA"), s.timeouts.mail)
    else:
        await s.wire.send(commands[0], s.timeouts.mail)
    reply = await s.wire.reply(s.timeouts.mail)
    if reply.code // 100 != 2:
        s.attempt.bulk_fail(s.said(reply, "MAIL FROM command"))
        if pipelined:  # read (and ignore) the replies to the RCPTs and DATA already sent
            try:
                for _ in range(len(rcpts) + 1):
                    await s.wire.reply(s.timeouts.rcpt)
            except StreamError:
                pass
        return None
    progress.stage = STAGE_RCPT
    accepted: list[RecipientRef] = []
    for index, rcpt in enumerate(rcpts):
        if not pipelined:
            await s.wire.send(commands[index + 1], s.timeouts.rcpt)
        reply = await s.wire.reply(s.timeouts.rcpt)
        if reply.code // 100 == 2:
            accepted.append(rcpt)
        else:
            s.attempt.rcpt_fail(rcpt.seq, s.said(reply, "RCPT TO command"))
    if not accepted and not pipelined:
        return None
    return accepted


async def _data_command(s: Session, features: Features, accepted: list[RecipientRef],
                        progress: _Progress) -> bool:
    """The DATA reply; True when the message itself should follow."""
    progress.stage = STAGE_DATA
    if not features.pipelining:
        await s.wire.send(command("DATA"), s.timeouts.data_init)
    reply = await s.wire.reply(s.timeouts.data_init)
    if reply.code // 100 != 3:
        if accepted:
            s.attempt.bulk_fail(s.said(reply, "DATA command"))
        return False
    if not accepted:  # RFC 2920: a pipelined DATA that got 354 ends with a lone "."
        await s.wire.send(b".\r\n", s.timeouts.data_done)
        return False
    return True


def _end_of_data(s: Session, reply: ServerReply, accepted: list[RecipientRef],
                 features: Features) -> None:
    if reply.code // 100 != 2:
        s.attempt.bulk_fail(s.said(reply, "end of DATA command"))
        return
    dsn = reply.dsn or default_dsn(reply.code)
    if not dsn.startswith("2"):
        dsn = "2.0.0"
    for rcpt in accepted:
        # Without DSN at the next hop, a requested success notice can only say "relayed";
        # with it, the next hop sends the notice itself.
        wants_success = "SUCCESS" in (rcpt.notify or "").upper().split(",")
        action = "" if not wants_success else DELEGATED if features.dsn else "relayed"
        s.attempt.rcpt_done(rcpt.seq, dsn, reply.text, s.target.relay, action)


async def _quit(s: Session) -> None:
    """QUIT without waiting for its reply (Postfix's smtp_skip_quit_response)."""
    with contextlib.suppress(StreamError):
        await s.wire.send(command("QUIT"), s.timeouts.quit)
