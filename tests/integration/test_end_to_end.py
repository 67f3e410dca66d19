"""Mail through the whole system: SMTP in, the queue, the queue manager, SMTP out to a real
next hop on loopback — and a bounce back to the sender when the next hop refuses."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time

import aiosmtplib
import pytest
from support.peer import Peer, Script
from support.smtpd import running_server

pytestmark = pytest.mark.integration

MASTER_SERVICES = (
    "smtp unix - - n - - smtp\n"
    "relay unix - - n - - smtp\n"
)


async def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def send(srv, sender: str, recipients: list[str], body: str) -> str:  # type: ignore[no-untyped-def]
    _, reply = await aiosmtplib.send(
        f"Subject: e2e\r\nMessage-ID: <e2e@client.test>\r\n\r\n{body}\r\n", sender=sender,
        recipients=recipients, hostname=srv.host, port=srv.port, local_hostname="client.test")
    return reply.rsplit(" ", 1)[1]


async def test_relayed_message_reaches_the_next_hop_and_leaves_the_queue(tmp_path):
    async with Peer(Script()) as peer:
        settings = {"relayhost": f"[127.0.0.1]:{peer.port}", "minimal_backoff_time": "1s"}
        async with running_server(tmp_path, settings, options="",
                                  services=MASTER_SERVICES) as srv:
            queue_id = await send(srv, "alice@client.test", ["bob@far.example"], "hello")

            async def gone() -> bool:
                return await srv.queue.get(queue_id) is None

            await wait_for(gone)
        assert len(peer.messages) == 1
        assert b"\r\nhello\r\n" in peer.messages[0]
        assert b"RCPT TO:<bob@far.example>" in b"".join(peer.commands)
    log = srv.log
    assert f"{queue_id}: to=<bob@far.example>, relay=127.0.0.1[127.0.0.1]:{peer.port}" in log
    assert "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as PEER1)" in log
    assert f"{queue_id}: removed" in log


async def test_refused_recipient_bounces_to_the_sender(tmp_path):
    script = Script(rcpt={"nobody@far.example": "550 5.1.1 <nobody@far.example>: no such user"})
    async with Peer(script) as far, Peer(Script(name="home.test")) as home:
        transport = tmp_path / "transport"
        transport.write_text(f"far.example smtp:[127.0.0.1]:{far.port}\n"
                             f"client.test smtp:[127.0.0.1]:{home.port}\n")
        settings = {"transport_maps": f"texthash:{transport}"}
        async with running_server(tmp_path, settings, services=MASTER_SERVICES) as srv:
            queue_id = await send(srv, "alice@client.test", ["nobody@far.example"], "x")

            async def bounced() -> bool:
                return bool(home.messages)

            await wait_for(bounced)
    assert b"MAIL FROM:<>" in b"".join(home.commands)
    notice = email.message_from_bytes(home.messages[0].replace(b"\r\n", b"\n"),
                                      policy=email.policy.default)
    assert notice.get_content_type() == "multipart/report"
    report = next(p for p in notice.walk()
                  if p.get_content_type() == "message/delivery-status")
    text = report.as_string()
    assert "Final-Recipient: rfc822; nobody@far.example" in text
    assert "Status: 5.1.1" in text and "Action: failed" in text
    assert f"{queue_id}: sender non-delivery notification:" in srv.log


async def _success_notice_test(tmp_path, far_extensions):  # type: ignore[no-untyped-def]
    """Send with NOTIFY=SUCCESS to far.example; return what the sender's domain received."""
    from support.client import raw_session

    async with Peer(Script(extensions=far_extensions)) as far, \
            Peer(Script(name="home.test")) as home:
        transport = tmp_path / "transport"
        transport.write_text(f"far.example smtp:[127.0.0.1]:{far.port}\n"
                             f"client.test smtp:[127.0.0.1]:{home.port}\n")
        settings = {"transport_maps": f"texthash:{transport}"}
        async with running_server(tmp_path, settings, services=MASTER_SERVICES) as srv:
            await raw_session(srv.host, srv.port, (
                b"EHLO client.test\r\nMAIL FROM:<alice@client.test>\r\n"
                b"RCPT TO:<bob@far.example> NOTIFY=SUCCESS\r\n"
                b"DATA\r\nSubject: dsn\r\n\r\nx\r\n.\r\nQUIT\r\n"))

            async def settled() -> bool:
                return not await srv.messages() and bool(far.messages)

            await wait_for(settled)
        return list(home.messages)


async def test_success_notice_says_relayed_when_the_next_hop_lacks_dsn(tmp_path):
    notices = await _success_notice_test(tmp_path, ("PIPELINING", "8BITMIME"))
    assert len(notices) == 1
    notice = email.message_from_bytes(notices[0].replace(b"\r\n", b"\n"),
                                      policy=email.policy.default)
    report = next(p for p in notice.walk()
                  if p.get_content_type() == "message/delivery-status")
    assert "Action: relayed" in report.as_string()


async def test_no_success_notice_when_the_next_hop_takes_the_dsn(tmp_path):
    # The next hop advertises DSN and got NOTIFY=SUCCESS: it owes the notice, not us.
    assert await _success_notice_test(tmp_path, ("PIPELINING", "8BITMIME", "DSN")) == []
