"""SmtpAgent's dialogue and failure policy against scripted servers (a fake connector:
replies are fed into an in-memory StreamReader, everything written is recorded)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from support.fakedns import FakeLookups

from mailcore.config import from_mapping
from mailcore.delivery.smtp import SmtpAgent
from mailcore.delivery.smtp_wire import data_stream, fold
from mailcore.model import BOUNCED, DEFERRED, DELEGATED, SENT, DeliveryRequest, RecipientRef

EHLO = "250-peer.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 DSN\r\n"
OK = "220 peer.test ESMTP\r\n" + EHLO


@dataclass
class Server:
    replies: str = ""  # everything the server will say, in order
    eof: bool = True  # hang up after the last reply; False: stay silent (a timeout)
    refuse: bool = False
    written: bytearray = field(default_factory=bytearray)


class FakeWriter:
    def __init__(self, server: Server):
        self.server = server

    def write(self, data: bytes) -> None:
        self.server.written += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


class Connector:
    def __init__(self, servers: dict[str, Server]):
        self.servers = servers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, address: str, port: int, timeout: float, bind: str
                       ) -> tuple[asyncio.StreamReader, FakeWriter]:
        self.calls.append((address, port))
        server = self.servers.get(address, Server(refuse=True))
        if server.refuse:
            raise ConnectionRefusedError(111, "Connect call failed")
        reader = asyncio.StreamReader()
        reader.feed_data(server.replies.encode())
        if server.eof:
            reader.feed_eof()
        return reader, FakeWriter(server)


BODY = b"Subject: test\n\n.leading dot\nline\n"


async def content(queue_id: str) -> AsyncIterator[bytes]:
    yield BODY


async def broken_content(queue_id: str) -> AsyncIterator[bytes]:
    yield b"Subject: x\n"
    raise RuntimeError("queue file vanished")


MX3 = {("d.test", "MX"): ["10 a.d.test.", "20 b.d.test.", "30 c.d.test."],
       ("a.d.test", "A"): ["192.0.2.1"], ("b.d.test", "A"): ["192.0.2.2"],
       ("c.d.test", "A"): ["192.0.2.3"]}


def agent(servers: dict[str, Server], *, lookups: FakeLookups | None = None,
          source=content, **settings: str) -> tuple[SmtpAgent, Connector]:  # type: ignore[no-untyped-def]
    config = from_mapping({"myhostname": "me.test", "smtp_helo_timeout": "1s",
                           **settings})
    connector = Connector(servers)
    smtp = SmtpAgent(config, lookups or FakeLookups(MX3), source, connector=connector,
                     rng=random.Random(0), own_addresses=frozenset({"192.0.2.99"}))
    return smtp, connector


def request(*addresses: str, nexthop: str = "[192.0.2.1]", size: int = 40,
            attrs: tuple[tuple[str, str], ...] = (), **rcpt: str) -> DeliveryRequest:
    recipients = tuple(RecipientRef(i + 1, a, **rcpt) for i, a in enumerate(addresses))
    return DeliveryRequest("Q1", "s@a.test", recipients, "smtp", nexthop, size, 0.0,
                           envid="env 1", ret="HDRS", attrs=attrs)


def outcome(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(r.status, r.dsn) for r in result.recipients]


async def test_mixed_rcpt_results_and_dsn_pass_through() -> None:
    server = Server(OK + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@x.test>: unknown\r\n"
                    "450 4.2.0 busy\r\n354 go\r\n250 2.0.0 Ok: queued as X1\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", "b@x.test", "c@x.test",
                                        notify="SUCCESS,FAILURE", orig_rcpt="Orig+1@x.test"))
    assert outcome(result) == [(SENT, "2.0.0"), (BOUNCED, "5.1.1"), (DEFERRED, "4.2.0")]
    assert result.recipients[0].relay == "192.0.2.1[192.0.2.1]:25"
    assert result.recipients[0].action == DELEGATED  # the next hop does DSN itself
    assert result.recipients[1].reason == ("host 192.0.2.1[192.0.2.1] said: 550 5.1.1 "
                                           "<b@x.test>: unknown (in reply to RCPT TO command)")
    lines = bytes(server.written).split(b"\r\n")
    assert lines[:3] == [b"EHLO me.test", b"MAIL FROM:<s@a.test> SIZE=40 ENVID=env+201 RET=HDRS",
                         b"RCPT TO:<a@x.test> ORCPT=rfc822;Orig+2B1@x.test NOTIFY=SUCCESS,FAILURE"]
    assert b"\r\n..leading dot\r\nline\r\n.\r\nQUIT\r\n" in server.written


async def test_without_dsn_success_is_relayed_and_no_dsn_parameters() -> None:
    server = Server("220 p ESMTP\r\n250 p\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", notify="SUCCESS"))
    assert outcome(result) == [(SENT, "2.0.0")] and result.recipients[0].action == "relayed"
    assert b"MAIL FROM:<s@a.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n" in server.written


async def test_data_rejected_applies_to_accepted_recipients_only() -> None:
    server = Server(OK + "250 Ok\r\n250 Ok\r\n550 5.1.1 no\r\n554 5.7.1 spam\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", "b@x.test"))
    assert outcome(result) == [(BOUNCED, "5.7.1"), (BOUNCED, "5.1.1")]
    assert "(in reply to DATA command)" in result.recipients[0].reason
    assert b"QUIT" in server.written and b"leading dot" not in server.written


async def test_enhanced_status_class_wins() -> None:
    server = Server(OK + "250 Ok\r\n550 4.7.1 try later\r\n554 5.5.1 no recipients\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    assert outcome(await smtp.deliver(request("a@x.test"))) == [(DEFERRED, "4.7.1")]


@pytest.mark.parametrize("first", [
    Server(refuse=True), Server("421 4.3.2 closing\r\n"), Server("450 busy\r\n"),
    Server("554 no\r\n"), Server(OK + "451 4.3.0 later\r\n"), Server(OK + "421 bye\r\n"),
    Server("220 p\r\n421 4.7.0 go away\r\n")])
async def test_next_mx_after_trouble_at_the_first(first: Server) -> None:
    good = Server(OK + "250 Ok\r\n250 Ok\r\n354 go\r\n250 2.0.0 Ok\r\n")
    smtp, connector = agent({"192.0.2.1": first, "192.0.2.2": good})
    result = await smtp.deliver(request("a@x.test", nexthop="d.test"))
    assert outcome(result) == [(SENT, "2.0.0")]
    assert [a for a, _ in connector.calls] == ["192.0.2.1", "192.0.2.2"]
    assert result.recipients[0].relay == "b.d.test[192.0.2.2]:25"


async def test_5xx_greeting_bounces_at_the_last_server_without_skip() -> None:
    smtp, _ = agent({"192.0.2.1": Server("554 5.7.1 go away\r\n")}, smtp_skip_5xx_greeting="no")
    result = await smtp.deliver(request("a@x.test"))
    assert outcome(result) == [(BOUNCED, "5.7.1")]
    assert result.recipients[0].reason.startswith("host 192.0.2.1[192.0.2.1] refused to talk")
    smtp, _ = agent({"192.0.2.1": Server("554 5.7.1 go away\r\n")})
    assert outcome(await smtp.deliver(request("a@x.test"))) == [(DEFERRED, "4.7.1")]


async def test_soft_rcpt_failure_is_retried_at_the_next_mx() -> None:
    first = Server(OK + "250 Ok\r\n250 Ok\r\n451 4.3.0 later\r\n354 go\r\n250 2.0.0 one\r\n")
    second = Server(OK + "250 Ok\r\n250 Ok\r\n354 go\r\n250 2.0.0 two\r\n")
    smtp, _ = agent({"192.0.2.1": first, "192.0.2.2": second})
    result = await smtp.deliver(request("a@x.test", "b@x.test", nexthop="d.test"))
    assert [(r.status, r.reason, r.relay[:8]) for r in result.recipients] == [
        (SENT, "250 2.0.0 one", "a.d.test"), (SENT, "250 2.0.0 two", "b.d.test")]
    assert b"RCPT TO:<a@x.test>" not in second.written


async def test_all_mx_fail_then_fallback_relay_and_limits() -> None:
    busy = OK + "451 4.3.0 later\r\n"
    servers = {a: Server(busy) for a in ("192.0.2.1", "192.0.2.2", "192.0.2.3")}
    servers["198.51.100.1"] = Server(OK + "250 Ok\r\n250 Ok\r\n354 go\r\n250 2.0.0 fb\r\n")
    smtp, connector = agent(servers, smtp_fallback_relay="[198.51.100.1]")
    assert outcome(await smtp.deliver(request("a@x.test", nexthop="d.test"))) == [
        (SENT, "2.0.0")]
    # smtp_mx_session_limit=2: the third MX is not tried before the fallback relay.
    assert [a for a, _ in connector.calls] == ["192.0.2.1", "192.0.2.2", "198.51.100.1"]
    smtp, connector = agent({}, smtp_mx_address_limit="2")
    result = await smtp.deliver(request("a@x.test", nexthop="d.test"))
    assert outcome(result) == [(DEFERRED, "4.4.1")] and len(connector.calls) == 2
    assert result.recipients[0].reason == "connect to b.d.test[192.0.2.2]:25: Connection refused"
    assert result.recipients[0].relay == "none"


async def test_mail_refused_at_the_last_mx_and_helo_fallback() -> None:
    server = Server("220 p\r\n502 5.5.2 what\r\n250 p\r\n553 5.7.1 sender refused\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", "b@x.test"))
    assert outcome(result) == [(BOUNCED, "5.7.1"), (BOUNCED, "5.7.1")]
    assert bytes(server.written) == (b"EHLO me.test\r\nHELO me.test\r\nMAIL FROM:<s@a.test>\r\n"
                                     b"QUIT\r\n")


async def test_size_refused_before_mail() -> None:
    server = Server(OK)
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", size=5000))
    assert outcome(result) == [(BOUNCED, "5.3.4")]
    assert "message size 5000 exceeds size limit 1000" in result.recipients[0].reason
    assert b"MAIL" not in server.written


async def test_smtputf8_required() -> None:
    smtp, _ = agent({"192.0.2.1": Server(OK)})
    result = await smtp.deliver(request("a@x.test", attrs=(("smtputf8", "yes"),)))
    assert outcome(result) == [(BOUNCED, "5.6.7")]
    with_utf8 = Server("220 p\r\n250-p\r\n250 SMTPUTF8\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n")
    smtp, _ = agent({"192.0.2.1": Server(OK), "192.0.2.2": with_utf8})
    result = await smtp.deliver(request("ü@x.test", nexthop="d.test"))
    assert outcome(result) == [(SENT, "2.0.0")]
    assert b"MAIL FROM:<s@a.test> SMTPUTF8\r\n" in with_utf8.written
    assert "RCPT TO:<ü@x.test>".encode() in with_utf8.written


async def test_drop_after_dot_and_timeouts_defer() -> None:
    server = Server(OK + "250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request("a@x.test", "b@x.test"))
    assert outcome(result) == [(DEFERRED, "4.4.2")] * 2
    assert result.recipients[0].reason == (
        "lost connection with 192.0.2.1[192.0.2.1] while sending end of data -- message may "
        "be sent more than once")
    smtp, _ = agent({"192.0.2.1": Server("", eof=False)}, smtp_helo_timeout="0.05s")
    result = await smtp.deliver(request("a@x.test"))
    assert result.recipients[0].reason == ("conversation with 192.0.2.1[192.0.2.1] timed out "
                                           "while receiving the initial server greeting")


async def test_injected_addresses_never_reach_the_server() -> None:
    server = Server(OK + "250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n")
    smtp, _ = agent({"192.0.2.1": server})
    result = await smtp.deliver(request('"b\rX"@y.test', "a@y.test>\r\nRCPT TO:<evil@y.test",
                                        "ok@y.test"))
    assert outcome(result) == [(BOUNCED, "5.1.3"), (BOUNCED, "5.1.3"), (SENT, "2.0.0")]
    assert b"evil" not in server.written and b"RCPT TO:<b>" not in server.written
    assert server.written.count(b"RCPT TO") == 1


async def test_internal_error_defers_and_keeps_nothing_half_done() -> None:
    server = Server(OK + "250 Ok\r\n250 Ok\r\n354 go\r\n")
    smtp, _ = agent({"192.0.2.1": server}, source=broken_content)
    result = await smtp.deliver(request("a@x.test"))
    assert outcome(result) == [(DEFERRED, "4.3.0")]


async def test_loops_to_myself() -> None:
    smtp, connector = agent({}, lookups=FakeLookups({("d.test", "MX"): ["10 m.d.test."],
                                                     ("m.d.test", "A"): ["192.0.2.99"]}))
    result = await smtp.deliver(request("a@d.test", nexthop="d.test"))
    assert outcome(result) == [(BOUNCED, "5.4.6")] and connector.calls == []
    echo = Server("220 p\r\n250-me.test\r\n250 PIPELINING\r\n")
    smtp, _ = agent({"192.0.2.1": echo})
    result = await smtp.deliver(request("a@x.test"))
    assert outcome(result) == [(BOUNCED, "5.4.6")]
    assert result.recipients[0].reason == "mail for [192.0.2.1] loops back to myself"


async def test_dns_failures_and_relayhost_configuration_problem() -> None:
    smtp, _ = agent({})
    assert outcome(await smtp.deliver(request("a@x.test", nexthop="nowhere.test"))) == [
        (BOUNCED, "5.1.2")]
    smtp, _ = agent({}, relayhost="[relay.test]")
    assert outcome(await smtp.deliver(request("a@x.test", nexthop="[relay.test]"))) == [
        (DEFERRED, "4.3.5")]


async def test_data_stream_encoding() -> None:
    async def lines() -> AsyncIterator[bytes]:
        for line in (b".", b"..x", b"crlf\r", b"", b"a" * 12):
            yield line
    chunks = [c async for c in data_stream(lines(), 5)]
    assert b"".join(chunks) == (b"..\r\n...x\r\ncrlf\r\n\r\naaaaa\r\n aaaa\r\n aaa\r\n.\r\n")
    assert fold(b"abc", 0) == b"abc\r\n"
