"""LmtpAgent delivering to a real, private Dovecot over LMTP (inet and unix); each message is
read back over IMAP and compared byte for byte with what was queued.

Dovecot (Debian's dovecot-imapd + dovecot-lmtpd, installed by scripts/install-peers) runs on
free loopback ports with a passwd-file userdb; quota rules in the userdb provoke a temporary
(452 4.2.2, quota_full_tempfail) and a permanent (552 5.2.2) refusal at the end of data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from support.dovecot import Dovecot, MailUser, require_dovecot

from mailcore.config import from_mapping
from mailcore.delivery.lmtp import LmtpAgent
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef
from mailcore.queue import Queue
from mailcore.queue.types import NewMessage, NewRecipient

ALICE = MailUser("alice@example.test", "alice-pw")
BOB = MailUser("bob@example.test", "bob-pw")
CAROL = MailUser("carol@example.test", "carol-pw",
                 "userdb_quota_rule=*:storage=1K userdb_quota_full_tempfail=yes")
DAVE = MailUser("dave@example.test", "dave-pw", "userdb_quota_rule=*:storage=1K")
SENDER = "sender@example.org"


def message(tag: str) -> bytes:
    """Stored form (LF): dots at line starts, UTF-8, blank lines, more than 1 KiB."""
    body = "".join(f"{i:03d} line of the body for {tag}, padded to be long enough\n"
                   for i in range(40))
    return (f"From: Sender <{SENDER}>\nTo: alice@example.test\nSubject: lmtp {tag}\n"
            f"Message-ID: <{tag}@example.org>\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            f".starts with a dot\n..two dots\n.\n\ngr\u00fc\u00dfe aus K\u00f6ln\n{body}"
            "last line without a newline").encode()


def crlf(stored: bytes) -> bytes:
    """What went over the wire, dot-stuffing undone: every line ends in CRLF."""
    return stored.replace(b"\n", b"\r\n") + b"\r\n"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    binary = require_dovecot()
    with Dovecot([ALICE, BOB, CAROL, DAVE], binary=binary) as server:
        yield server


async def queue_and_deliver(tmp_path, nexthop: str, content: bytes,
                            addresses: list[str]) -> tuple[DeliveryRequest, dict]:
    queue = await Queue.open(tmp_path / "queue")
    try:
        queue_id = await queue.enqueue(NewMessage(
            sender=SENDER, recipients=tuple(NewRecipient(a) for a in addresses),
            content_path=None, content=content, size=len(content), arrival_time=0.0,
            attrs={"body_type": "8BITMIME"}))
        request = DeliveryRequest(
            queue_id=queue_id, sender=SENDER, transport="lmtp", nexthop=nexthop,
            recipients=tuple(RecipientRef(i + 1, a) for i, a in enumerate(addresses)),
            size=len(content), arrival_time=0.0, attrs=(("body_type", "8BITMIME"),))
        config = from_mapping({"myhostname": "mx.example.test",
                               "queue_directory": str(tmp_path / "queue")})
        result = await LmtpAgent(config, queue.read_content).deliver(request)
    finally:
        await queue.close()
    names = {r.seq: r.address for r in request.recipients}
    return request, {names[r.seq]: r for r in result.recipients}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["inet", "unix"])
async def test_delivery_and_read_back(dovecot: Dovecot, tmp_path, kind: str) -> None:
    nexthop = (f"inet:127.0.0.1:{dovecot.lmtp_port}" if kind == "inet"
               else f"unix:{dovecot.lmtp_socket}")
    before = {u.name: len(await asyncio.to_thread(dovecot.fetch_inbox, u)) for u in (ALICE, BOB)}
    content = message(kind)
    _, got = await queue_and_deliver(tmp_path, nexthop, content, [
        ALICE.name, "nosuchuser@example.test", BOB.name, CAROL.name, DAVE.name])

    relay = (f"127.0.0.1[127.0.0.1]:{dovecot.lmtp_port}" if kind == "inet"
             else f"mx.example.test[{dovecot.lmtp_socket}]")
    host = relay.rsplit(":", 1)[0] if kind == "inet" else relay
    assert {a: (r.status, r.dsn) for a, r in got.items()} == {
        ALICE.name: (SENT, "2.0.0"), BOB.name: (SENT, "2.0.0"),
        "nosuchuser@example.test": (BOUNCED, "5.1.1"),
        CAROL.name: (DEFERRED, "4.2.2"), DAVE.name: (BOUNCED, "5.2.2")}
    assert {r.relay for r in got.values()} == {relay}
    assert got[ALICE.name].reason.startswith("250 2.0.0 <alice@example.test> ")
    assert got["nosuchuser@example.test"].reason.startswith(
        f"host {host} said: 550 5.1.1 <nosuchuser@example.test> ")
    assert got["nosuchuser@example.test"].reason.endswith("(in reply to RCPT TO command)")
    assert got[CAROL.name].reason.endswith("(in reply to end of DATA command)")
    assert "Quota exceeded" in got[DAVE.name].reason

    expected = b"Return-Path: <" + SENDER.encode() + b">\r\n" + crlf(content)
    for user in (ALICE, BOB):
        bodies = await asyncio.to_thread(dovecot.fetch_inbox, user)
        assert len(bodies) == before[user.name] + 1
        assert bodies[-1] == expected
    for user in (CAROL, DAVE):
        assert await asyncio.to_thread(dovecot.fetch_inbox, user) == []


@pytest.mark.timeout(60)
async def test_unknown_users_only(dovecot: Dovecot, tmp_path) -> None:
    _, got = await queue_and_deliver(tmp_path, f"inet:127.0.0.1:{dovecot.lmtp_port}",
                                     message("nobody"), ["x@example.test", "y@example.test"])
    assert {(r.status, r.dsn) for r in got.values()} == {(BOUNCED, "5.1.1")}
