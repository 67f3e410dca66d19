"""The dialogue without sockets: parameters, sequencing and the disconnect counts."""

from __future__ import annotations

import io

from mailcore.log import MailLog
from mailcore.model import ClientInfo
from mailcore.restrictions import Facts, Verdict
from mailcore.smtpd.policy import Dialogue, SessionState, disconnect_counts
from mailcore.smtpd.settings import SmtpdSettings


class Permit:
    async def check(self, facts: Facts) -> Verdict | None:
        return None


async def space_ok(size: int) -> bool:
    return True


def dialogue(**settings: object) -> Dialogue:
    ids = iter(["Q1", "Q2"])
    return Dialogue(SmtpdSettings(myhostname="mx.test", **settings),  # type: ignore[arg-type]
                    SessionState(ClientInfo("192.0.2.1")), Permit(), lambda: next(ids),
                    space_ok, MailLog(hostname="mx.test", stream=io.StringIO()))


async def test_transaction_keeps_dsn_and_mime_parameters() -> None:
    d = dialogue()
    assert (await d.handle("EHLO", "c.test")).code == 250
    answer = await d.handle("MAIL", "FROM:<a@c.test> BODY=8bitmime SMTPUTF8 RET=full ENVID=x+2By")
    assert answer.text == "250 2.1.0 Ok"
    tx = d.state.tx
    assert tx is not None
    assert (tx.body, tx.smtputf8, tx.ret, tx.envid) == ("8BITMIME", True, "FULL", "x+y")
    await d.handle("RCPT", "TO:<Ünïcode@mx.test> NOTIFY=delay ORCPT=utf-8;\\x{DC}@mx.test")
    [rcpt] = tx.recipients
    assert (rcpt.address, rcpt.notify, rcpt.orcpt) == ("Ünïcode@mx.test", "DELAY",
                                                       "utf-8;Ü@mx.test")
    assert tx.queue_id == "Q1"
    envelope = d.state.envelope()
    assert envelope.client.protocol == "UTF8ESMTP" and envelope.client.helo == "c.test"


async def test_smtputf8_refused_when_disabled() -> None:
    d = dialogue(smtputf8=False)
    assert "SMTPUTF8" not in d.ehlo_keywords()
    answer = await d.handle("MAIL", "FROM:<a@c.test> SMTPUTF8")
    assert answer.text == "555 5.5.4 Unsupported option: SMTPUTF8"


async def test_helo_resets_the_transaction_and_size_zero_means_unlimited() -> None:
    d = dialogue(message_size_limit=0)
    assert "SIZE" in d.ehlo_keywords()
    await d.handle("MAIL", "FROM:<> SIZE=999999999999")
    assert d.state.tx is not None and d.state.tx.sender == ""
    await d.handle("HELO", "again.test")
    assert d.state.tx is None and not d.state.esmtp


async def test_strict_envelopes() -> None:
    lax, strict = dialogue(), dialogue(strict_rfc821=True)
    assert (await lax.handle("MAIL", "FROM:a@c.test")).code == 250
    assert (await strict.handle("MAIL", "FROM:a@c.test")).code == 501


def test_disconnect_counts_format() -> None:
    state = SessionState(ClientInfo("192.0.2.1"))
    for name, ok in [("ehlo", True), ("mail", True), ("rcpt", False), ("rcpt", True),
                     ("unknown", False), ("quit", True)]:
        state.count(name, ok)
    assert disconnect_counts(state) == "ehlo=1 mail=1 rcpt=1/2 quit=1 unknown=0/1 commands=4/6"
