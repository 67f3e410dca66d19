"""SmtpAgent on loopback: real DNS answers from tests/support/dnsserver.py and real SMTP
peers from tests/support/peer.py (several 127.0.0.x addresses sharing one port, as MX hosts
share smtp_tcp_port), plus one delivery to Postfix's own smtp-sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.dnsserver import DnsServer
from support.peer import Peer, Script, close_all, peers_on_one_port

from mailcore.config import from_mapping
from mailcore.delivery.smtp import SmtpAgent
from mailcore.dns import Resolver
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef

pytestmark = pytest.mark.integration

BODY = b"Subject: integration\nFrom: s@a.test\n\n.starts with a dot\nlast line\n"
NO_ESMTP_EXTRAS = ("PIPELINING", "SIZE 100", "8BITMIME")


async def content(queue_id: str) -> AsyncIterator[bytes]:
    yield BODY[:20]
    yield BODY[20:]


def make_agent(port: int, dns: DnsServer | None = None, **settings: str) -> SmtpAgent:
    config = from_mapping({"myhostname": "me.test", "smtp_tcp_port": str(port),
                           "smtp_helo_timeout": "5s", **settings})
    resolver = Resolver([("127.0.0.1", dns.port)] if dns else [("127.0.0.1", 9)], timeout=1)
    return SmtpAgent(config, resolver, content)


def request(*addresses: str, nexthop: str, size: int = len(BODY),
            attrs: tuple[tuple[str, str], ...] = (), **rcpt: str) -> DeliveryRequest:
    recipients = tuple(RecipientRef(i + 1, a, **rcpt) for i, a in enumerate(addresses))
    return DeliveryRequest("QINT1", "s@a.test", recipients, "smtp", nexthop, size, 0.0,
                           envid="E1", ret="FULL", attrs=attrs)


def statuses(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(r.status, r.dsn) for r in result.recipients]


MX_RECORDS = {
    "d.test": {"MX": ["10 mx1.d.test", "20 mx2.d.test"]},
    "mx1.d.test": {"A": ["127.0.0.2"]},
    "mx2.d.test": {"A": ["127.0.0.3"]},
    "implicit.test": {"A": ["127.0.0.3"]},
    "nullmx.test": {"MX": ["0 ."], "A": ["127.0.0.3"]},
}

FIRST_MX_TROUBLE = {
    "refused": None,
    "421 greeting": Script(greeting="421 4.3.2 mx1 closing"),
    "4xx greeting": Script(greeting="450 4.7.1 mx1 busy"),
    "4xx after MAIL": Script(mail="451 4.3.0 mx1 try later"),
}


@pytest.mark.parametrize("trouble", list(FIRST_MX_TROUBLE))
async def test_mx_preference_and_fallback_to_the_next_mx(trouble: str) -> None:
    first = FIRST_MX_TROUBLE[trouble]
    scripts = {"127.0.0.3": Script(name="mx2.d.test")}
    if first is not None:
        scripts = {"127.0.0.2": first, **scripts}
    peers = await peers_on_one_port(scripts)
    try:
        async with DnsServer(MX_RECORDS) as dns:
            result = await make_agent(peers[0].port, dns).deliver(
                request("a@d.test", nexthop="d.test"))
    finally:
        await close_all(peers)
    assert statuses(result) == [(SENT, "2.0.0")]
    assert result.recipients[0].relay == f"mx2.d.test[127.0.0.3]:{peers[0].port}"
    second = peers[-1]
    assert second.messages == [b"Subject: integration\r\nFrom: s@a.test\r\n\r\n"
                               b"..starts with a dot\r\nlast line\r\n"]
    if first is not None:
        assert len(peers[0].sessions) == 1  # the better MX was tried first


async def test_implicit_mx_null_mx_nxdomain_servfail() -> None:
    async with Peer(Script(), "127.0.0.3") as peer, \
            DnsServer(MX_RECORDS, servfail=["broken.test"]) as dns:
        agent = make_agent(peer.port, dns)
        implicit = await agent.deliver(request("a@implicit.test", nexthop="implicit.test"))
        null = await agent.deliver(request("a@nullmx.test", nexthop="nullmx.test"))
        missing = await agent.deliver(request("a@nowhere.test", nexthop="nowhere.test"))
        broken = await agent.deliver(request("a@broken.test", nexthop="broken.test"))
    assert statuses(implicit) == [(SENT, "2.0.0")]
    assert len(peer.sessions) == 1  # null MX, NXDOMAIN and SERVFAIL never connect
    assert statuses(null) == [(BOUNCED, "5.1.10")]
    assert null.recipients[0].reason == "Domain nullmx.test does not accept mail (nullMX)"
    assert statuses(missing) == [(BOUNCED, "5.1.2")]
    assert statuses(broken) == [(DEFERRED, "4.4.3")]
    assert ("broken.test.", "MX") in dns.queries


async def test_mixed_recipients_and_dsn_pass_through() -> None:
    script = Script(rcpt={"b@x.test": "550 5.1.1 <b@x.test>: Recipient address rejected",
                          "c@x.test": "452 4.2.2 mailbox full"})
    async with Peer(script) as peer:
        result = await make_agent(peer.port).deliver(request(
            "a@x.test", "b@x.test", "c@x.test", nexthop="[127.0.0.1]", notify="SUCCESS",
            orig_rcpt="orig@x.test"))
    assert statuses(result) == [(SENT, "2.0.0"), (BOUNCED, "5.1.1"), (DEFERRED, "4.2.2")]
    assert result.recipients[1].reason == (
        "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <b@x.test>: Recipient address rejected "
        "(in reply to RCPT TO command)")
    mail = f"MAIL FROM:<s@a.test> SIZE={len(BODY)} ENVID=E1 RET=FULL\r\n"
    assert peer.commands[1] == mail.encode()
    assert peer.commands[2] == b"RCPT TO:<a@x.test> ORCPT=rfc822;orig@x.test NOTIFY=SUCCESS\r\n"
    assert peer.commands[-1] == b"QUIT\r\n"


async def test_without_dsn_the_success_is_relayed() -> None:
    async with Peer(Script(extensions=NO_ESMTP_EXTRAS)) as peer:
        result = await make_agent(peer.port).deliver(
            request("a@x.test", nexthop="[127.0.0.1]", notify="SUCCESS"))
    assert statuses(result) == [(SENT, "2.0.0")] and result.recipients[0].action == "relayed"
    assert b"NOTIFY" not in b"".join(peer.commands)


@pytest.mark.parametrize(("script", "expected", "words"), [
    (Script(data="554 5.7.1 content refused"), (BOUNCED, "5.7.1"), "in reply to DATA command"),
    (Script(dot="552 5.3.4 too big after all"), (BOUNCED, "5.3.4"), "end of DATA command"),
    (Script(dot=None), (DEFERRED, "4.4.2"), "while sending end of data"),
    (Script(extensions=("SIZE 10",)), (BOUNCED, "5.3.4"), "exceeds size limit 10"),
    (Script(extensions=NO_ESMTP_EXTRAS), (BOUNCED, "5.6.7"), "requires SMTPUTF8"),
])
async def test_message_level_failures(script: Script, expected: tuple[str, str],
                                      words: str) -> None:
    async with Peer(script) as peer:
        result = await make_agent(peer.port).deliver(request(
            "a@x.test", "b@x.test", nexthop=f"[127.0.0.1]:{peer.port}",
            attrs=(("smtputf8", "yes"),) if expected[1] == "5.6.7" else ()))
    assert statuses(result) == [expected, expected]
    assert words in result.recipients[0].reason


async def test_an_injected_recipient_never_reaches_the_next_hop() -> None:
    async with Peer() as peer:
        result = await make_agent(peer.port).deliver(request(
            '"b\rX"@y.test', "a@y.test>\r\nRCPT TO:<evil@y.test", "fine@y.test",
            nexthop="[127.0.0.1]"))
    assert statuses(result) == [(BOUNCED, "5.1.3"), (BOUNCED, "5.1.3"), (SENT, "2.0.0")]
    raw = b"".join(bytes(s.raw) for s in peer.sessions)
    assert b"evil" not in raw and b"RCPT TO:<b>" not in raw
    assert [c for c in peer.commands if c.startswith(b"RCPT")] == [b"RCPT TO:<fine@y.test>\r\n"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_delivery_to_postfix_smtp_sink() -> None:
    sink = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink"
                                         if os.path.exists("/usr/sbin/smtp-sink") else None)
    if sink is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Postfix smtp-sink is not installed")
        pytest.skip("Postfix smtp-sink is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # smtp-sink drops to "nobody" before writing its dump
        args = ["-n", "2", "-d", f"{tmp}/%M.", f"127.0.0.1:{port}", "5"]
        if os.geteuid() == 0:
            args = ["-u", "nobody", *args]
        proc = await asyncio.create_subprocess_exec(sink, *args)
        try:
            await _wait_listening(port)  # this probe is smtp-sink's first session
            result = await make_agent(port).deliver(
                request("a@x.test", nexthop=f"[127.0.0.1]:{port}"))
        finally:  # -n bounds its life; a probe that never said QUIT may not count
            if proc.returncode is None:
                proc.terminate()
                async with asyncio.timeout(5):
                    await proc.wait()
        dumps = [p.read_bytes() for p in Path(tmp).iterdir()]
    assert statuses(result) == [(SENT, "2.0.0")]
    assert len(dumps) == 1 and b"X-Rcpt-Args: <a@x.test>" in dumps[0]
    assert b"\n..starts with a dot" not in dumps[0] and b".starts with a dot" in dumps[0]


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("smtp-sink did not start listening")
