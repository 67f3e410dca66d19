"""LmtpAgent against a small scripted LMTP server (asyncio, loopback TCP and unix sockets).

Each recipient's RCPT and end-of-data replies are scripted; the server records what it got.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.config import from_mapping
from mailcore.delivery.lmtp import LmtpAgent
from mailcore.dns import FOUND, NOT_FOUND, TEMPORARY, DnsResult
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef

DROP = b"<drop>"  # close the connection instead of sending this reply
SILENT = b"<silent>"  # send nothing, keep the connection open
MESSAGE = b"Subject: test\n\nline one\n.leading dot\n..two dots\n.\nlast line\n"
WIRE_FORM = (b"Subject: test\r\n\r\nline one\r\n..leading dot\r\n...two dots\r\n..\r\n"
             b"last line\r\n.\r\n")


class ScriptedLmtp:
    """An LMTP server whose replies come from a script; one connection at a time."""

    def __init__(self, *, extensions: tuple[str, ...] = ("PIPELINING", "ENHANCEDSTATUSCODES"),
                 greeting: bytes = b"220 lmtp.test ready", mail: bytes = b"250 2.1.0 OK",
                 rcpt: dict[str, bytes] | None = None, data: bytes | None = None,
                 final: dict[str, bytes] | None = None, hangup_after_mail: bool = False):
        self.extensions = extensions
        self.greeting = greeting
        self.mail = mail
        self.rcpt = rcpt or {}
        self.data = data
        self.final = final or {}
        self.hangup_after_mail = hangup_after_mail
        self.commands: list[str] = []
        self.content = b""
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.path = ""

    async def start_inet(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"inet:127.0.0.1:{self.port}"

    async def start_unix(self) -> str:
        self.tmp = tempfile.TemporaryDirectory(prefix="mc-lmtp-")
        self.path = str(Path(self.tmp.name) / "lmtp")
        self.server = await asyncio.start_unix_server(self.handle, self.path)
        return f"unix:{self.path}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.tmp is not None:
            self.tmp.cleanup()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await self.reply(writer, self.greeting):
            return
        accepted: list[str] = []
        while line := await reader.readline():
            command = line.decode().rstrip("\r\n")
            self.commands.append(command)
            verb = command.split(" ", 1)[0].upper()
            if verb == "LHLO":
                lines = ["lmtp.test", *self.extensions]
                text = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}"
                await self.reply(writer, text.encode())
            elif verb == "MAIL":
                await self.reply(writer, self.mail)
                if self.hangup_after_mail:
                    return
            elif verb == "RCPT":
                address = command.split("<", 1)[1].split(">", 1)[0]
                answer = self.rcpt.get(address, b"250 2.1.5 OK")
                if answer.startswith(b"2"):
                    accepted.append(address)
                if not await self.reply(writer, answer):
                    return
            elif verb == "DATA":
                if not await self.data_phase(reader, writer, accepted):
                    return
            elif verb == "QUIT":
                await self.reply(writer, b"221 2.0.0 Bye")
                return
            else:
                await self.reply(writer, b"502 5.5.2 Unknown command")

    async def data_phase(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         accepted: list[str]) -> bool:
        answer = self.data or (b"354 go ahead" if accepted else b"503 5.5.1 No recipients")
        if not await self.reply(writer, answer) or not answer.startswith(b"354"):
            return answer != DROP
        while (line := await reader.readline()) != b".\r\n":
            if not line:
                return False
            self.content += line
        self.content += b".\r\n"
        for address in accepted:
            if not await self.reply(writer, self.final.get(
                    address, f"250 2.0.0 <{address}> Saved".encode())):
                return False
        return True

    async def reply(self, writer: asyncio.StreamWriter, text: bytes) -> bool:
        if text == DROP:
            return False
        if text == SILENT:
            await asyncio.sleep(30)
            return False
        writer.write(text + b"\r\n")
        await writer.drain()
        return True


def content_source(message: bytes = MESSAGE, chunk: int = 7):
    async def source(queue_id: str) -> AsyncIterator[bytes]:
        assert queue_id == "QID1"
        for i in range(0, len(message), chunk):
            yield message[i:i + chunk]
    return source


def request(nexthop: str, *addresses: str, sender: str = "sender@example.org",
            **extra) -> DeliveryRequest:
    refs = tuple(RecipientRef(seq=i + 1, address=a) for i, a in enumerate(addresses))
    return DeliveryRequest(queue_id="QID1", sender=sender, recipients=refs, transport="lmtp",
                           nexthop=nexthop, size=len(MESSAGE), arrival_time=0.0, **extra)


def agent(settings: dict[str, str] | None = None, source=None, resolver=None) -> LmtpAgent:
    config = from_mapping({"myhostname": "mx.example.test", "lmtp_lhlo_name": "mx.example.test",
                           "lmtp_data_done_timeout": "3s", **(settings or {})})
    return LmtpAgent(config, source or content_source(), resolver=resolver)


@pytest.fixture
async def servers():
    started: list[ScriptedLmtp] = []
    yield started
    for server in started:
        await server.stop()


async def start(servers: list[ScriptedLmtp], kind: str, **script) -> tuple[ScriptedLmtp, str]:
    server = ScriptedLmtp(**script)
    servers.append(server)
    nexthop = await (server.start_unix() if kind == "unix" else server.start_inet())
    return server, nexthop


def by_address(req: DeliveryRequest, result) -> dict[str, object]:
    names = {r.seq: r.address for r in req.recipients}
    assert len(result.recipients) == len(req.recipients)
    return {names[r.seq]: r for r in result.recipients}


@pytest.mark.parametrize("kind", ["inet", "unix"])
@pytest.mark.parametrize("pipelining", [True, False])
async def test_each_recipient_settled_on_its_own(servers, kind: str, pipelining: bool) -> None:
    extensions = ("PIPELINING",) if pipelining else ("8BITMIME",)
    server, nexthop = await start(
        servers, kind, extensions=extensions,
        rcpt={"b@x.test": b"550 5.1.1 <b@x.test> User doesn't exist",
              "e@x.test": b"452 4.5.3 Too many recipients"},
        final={"c@x.test": b"452 4.2.2 <c@x.test> Quota exceeded",
               "d@x.test": b"552 5.2.2 <d@x.test> Mailbox full"})
    req = request(nexthop, "a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test")
    result = await agent().deliver(req)
    got = by_address(req, result)
    host = (f"mx.example.test[{server.path}]" if kind == "unix"
            else "127.0.0.1[127.0.0.1]")
    relay = host if kind == "unix" else f"{host}:{server.port}"
    assert {a: (r.status, r.dsn) for a, r in got.items()} == {
        "a@x.test": (SENT, "2.0.0"), "b@x.test": (BOUNCED, "5.1.1"),
        "c@x.test": (DEFERRED, "4.2.2"), "d@x.test": (BOUNCED, "5.2.2"),
        "e@x.test": (DEFERRED, "4.5.3")}
    assert got["a@x.test"].reason == "250 2.0.0 <a@x.test> Saved"
    assert got["b@x.test"].reason == (f"host {host} said: 550 5.1.1 <b@x.test> User doesn't "
                                      "exist (in reply to RCPT TO command)")
    assert got["c@x.test"].reason == (f"host {host} said: 452 4.2.2 <c@x.test> Quota "
                                      "exceeded (in reply to end of DATA command)")
    assert {r.relay for r in result.recipients} == {relay}
    assert server.content == WIRE_FORM
    assert server.commands[0] == "LHLO mx.example.test"
    assert server.commands[1] == "MAIL FROM:<sender@example.org>"
    assert server.commands[-1] == "QUIT"


@pytest.mark.parametrize("kind", ["inet", "unix"])
async def test_drop_before_last_reply_defers_only_the_unsettled(servers, kind: str) -> None:
    _, nexthop = await start(servers, kind, final={"b@x.test": DROP})
    req = request(nexthop, "a@x.test", "b@x.test", "c@x.test")
    got = by_address(req, await agent().deliver(req))
    assert got["a@x.test"].status == SENT
    for address in ("b@x.test", "c@x.test"):
        assert (got[address].status, got[address].dsn) == (DEFERRED, "4.4.2")
        assert got[address].reason.startswith("lost connection with ")
        assert got[address].reason.endswith(
            "while sending end of data -- message may be sent more than once")


async def test_silence_after_data_times_out(servers) -> None:
    _, nexthop = await start(servers, "inet", final={"b@x.test": SILENT})
    req = request(nexthop, "a@x.test", "b@x.test")
    got = by_address(req, await agent({"lmtp_data_done_timeout": "1s"}).deliver(req))
    assert got["a@x.test"].status == SENT
    assert got["b@x.test"].status == DEFERRED
    assert "timed out while sending end of data" in got["b@x.test"].reason


@pytest.mark.parametrize(("reply", "status", "dsn"), [
    (b"550 5.7.1 Sender rejected", BOUNCED, "5.7.1"),
    (b"451 Try later", DEFERRED, "4.0.0"),
])
@pytest.mark.parametrize("pipelining", [True, False])
async def test_mail_from_refusal_settles_everyone(servers, reply, status, dsn,
                                                  pipelining) -> None:
    extensions = ("PIPELINING",) if pipelining else ("SIZE",)
    server, nexthop = await start(servers, "inet", mail=reply, extensions=extensions)
    req = request(nexthop, "a@x.test", "b@x.test")
    result = await agent().deliver(req)
    assert {(r.status, r.dsn) for r in result.recipients} == {(status, dsn)}
    assert all(r.reason.endswith("(in reply to MAIL FROM command)") for r in result.recipients)
    assert server.content == b""


async def test_data_refusal_fails_accepted_recipients(servers) -> None:
    _, nexthop = await start(servers, "inet", data=b"554 5.6.0 No thanks",
                             rcpt={"b@x.test": b"450 4.2.1 busy"})
    req = request(nexthop, "a@x.test", "b@x.test")
    got = by_address(req, await agent().deliver(req))
    assert (got["a@x.test"].status, got["a@x.test"].dsn) == (BOUNCED, "5.6.0")
    assert got["a@x.test"].reason.endswith("(in reply to DATA command)")
    assert (got["b@x.test"].status, got["b@x.test"].dsn) == (DEFERRED, "4.2.1")


async def test_non_354_success_to_data_is_a_protocol_error(servers) -> None:
    _, nexthop = await start(servers, "inet", data=b"250 2.0.0 whatever", extensions=())
    req = request(nexthop, "a@x.test")
    (res,) = (await agent().deliver(req)).recipients
    assert (res.status, res.dsn) == (BOUNCED, "5.5.0")
    assert res.reason.startswith("Protocol error: host 127.0.0.1[127.0.0.1] said: 250")


async def test_all_recipients_refused_sends_no_data(servers) -> None:
    server, nexthop = await start(servers, "inet", extensions=(),
                                  rcpt={"a@x.test": b"550 5.1.1 no"})
    req = request(nexthop, "a@x.test")
    (res,) = (await agent().deliver(req)).recipients
    assert res.status == BOUNCED
    assert "DATA" not in server.commands and server.commands[-1] == "QUIT"


@pytest.mark.parametrize(("greeting", "dsn"), [
    (b"554 5.3.2 go away", "4.3.2"), (b"421 4.3.2 busy", "4.3.2"), (b"554 no", "4.0.0")])
async def test_greeting_refusal_defers(servers, greeting: bytes, dsn: str) -> None:
    _, nexthop = await start(servers, "inet", greeting=greeting)
    (res,) = (await agent().deliver(request(nexthop, "a@x.test"))).recipients
    assert (res.status, res.dsn) == (DEFERRED, dsn)
    assert res.reason == f"host 127.0.0.1[127.0.0.1] refused to talk to me: {greeting.decode()}"


async def test_greeting_5xx_bounces_when_not_skipped(servers) -> None:
    _, nexthop = await start(servers, "inet", greeting=b"554 5.3.2 go away")
    result = await agent({"lmtp_skip_5xx_greeting": "no"}).deliver(request(nexthop, "a@x.test"))
    assert (result.recipients[0].status, result.recipients[0].dsn) == (BOUNCED, "5.3.2")


async def test_garbage_reply_defers_everything_unsettled(servers) -> None:
    _, nexthop = await start(servers, "inet", extensions=(),
                             rcpt={"b@x.test": b"what is this"})
    req = request(nexthop, "a@x.test", "b@x.test")
    got = by_address(req, await agent().deliver(req))
    assert {(r.status, r.dsn) for r in got.values()} == {(DEFERRED, "4.5.0")}
    assert "sent a malformed reply while sending RCPT TO: what is this" in got["b@x.test"].reason


async def test_esmtp_parameters_when_offered(servers) -> None:
    server, nexthop = await start(
        servers, "inet", extensions=("PIPELINING", "SIZE 100000", "8BITMIME", "SMTPUTF8", "DSN"))
    refs = (RecipientRef(1, "a@x.test", orig_rcpt="Orig+1@y.test", notify="SUCCESS,DELAY"),
            RecipientRef(2, "b@x.test", orcpt="rfc822;b=c@y.test"),
            RecipientRef(3, "c@x.test", orcpt="utf-8;j\u00f6@y.test", notify="NEVER"))
    req = DeliveryRequest("QID1", "s@example.org", refs, "lmtp", nexthop, len(MESSAGE), 0.0,
                          envid="id 1", ret="hdrs",
                          attrs=(("body_type", "8BITMIME"), ("smtputf8", "yes")))
    result = await agent().deliver(req)
    assert {r.status for r in result.recipients} == {SENT}
    assert server.commands[1:5] == [
        f"MAIL FROM:<s@example.org> SIZE={len(MESSAGE)} BODY=8BITMIME SMTPUTF8 RET=HDRS "
        "ENVID=id+201",
        "RCPT TO:<a@x.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Orig+2B1@y.test",
        "RCPT TO:<b@x.test> ORCPT=rfc822;b+3Dc@y.test",
        "RCPT TO:<c@x.test> NOTIFY=NEVER ORCPT=utf-8;j\\x{F6}@y.test",
    ]


async def test_no_esmtp_parameters_when_not_offered(servers) -> None:
    server, nexthop = await start(servers, "inet", extensions=("PIPELINING",))
    refs = (RecipientRef(1, "a@x.test", orig_rcpt="o@y.test", notify="NEVER"),)
    req = DeliveryRequest("QID1", "", refs, "lmtp", nexthop, 10, 0.0, envid="e", ret="FULL",
                          attrs=(("body_type", "8BITMIME"),))
    await agent().deliver(req)
    assert server.commands[1:3] == ["MAIL FROM:<>", "RCPT TO:<a@x.test>"]


async def test_size_limit_of_server_bounces_before_mail(servers) -> None:
    server, nexthop = await start(servers, "inet", extensions=("SIZE 10",))
    (res,) = (await agent().deliver(request(nexthop, "a@x.test"))).recipients
    assert (res.status, res.dsn) == (BOUNCED, "5.3.4")
    assert res.reason == (f"message size {len(MESSAGE)} exceeds size limit 10 of server "
                          "127.0.0.1[127.0.0.1]")
    assert not any(c.startswith("MAIL") for c in server.commands)


async def test_utf8_envelope_needs_smtputf8(servers) -> None:
    _, nexthop = await start(servers, "inet", extensions=("8BITMIME",))
    req = request(nexthop, "j\u00f6@x.test", attrs=(("smtputf8", "yes"),))
    (res,) = (await agent().deliver(req)).recipients
    assert (res.status, res.dsn) == (BOUNCED, "5.6.7")


async def test_unparseable_recipient_bounces_alone(servers) -> None:
    server, nexthop = await start(servers, "inet")
    req = request(nexthop, "a@x.test", "bad>@x.test")
    got = by_address(req, await agent().deliver(req))
    assert got["a@x.test"].status == SENT
    assert (got["bad>@x.test"].status, got["bad>@x.test"].dsn) == (BOUNCED, "5.1.3")
    assert not any("bad>" in c for c in server.commands)


async def test_local_data_error_never_ends_the_message(servers) -> None:
    async def broken(queue_id: str) -> AsyncIterator[bytes]:
        yield b"Subject: half\n"
        raise OSError("queue file vanished")

    server, nexthop = await start(servers, "inet")
    (res,) = (await agent(source=broken).deliver(request(nexthop, "a@x.test"))).recipients
    assert (res.status, res.dsn) == (DEFERRED, "4.3.0")
    assert res.reason == "local data error while talking to 127.0.0.1[127.0.0.1]"
    await asyncio.sleep(0.05)
    assert not server.content.endswith(b".\r\n")


async def test_large_message_arrives_intact(servers) -> None:
    body = b"".join(b"%06d " % i + b"x" * 70 + b"\n" for i in range(5000))
    message = b"Subject: big\n\n" + body
    server, nexthop = await start(servers, "unix")
    result = await agent(source=content_source(message, chunk=4096)).deliver(
        request(nexthop, "a@x.test"))
    assert result.recipients[0].status == SENT
    assert server.content == message.replace(b"\n", b"\r\n") + b".\r\n"


async def test_connection_refused_defers_with_relay_none() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    (res,) = (await agent().deliver(request(f"inet:127.0.0.1:{port}", "a@x.test"))).recipients
    assert (res.status, res.dsn, res.relay) == (DEFERRED, "4.4.1", "none")
    assert res.reason == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"


async def test_missing_unix_socket_defers() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/nothing"
        (res,) = (await agent().deliver(request(f"unix:{path}", "a@x.test"))).recipients
    assert (res.status, res.dsn) == (DEFERRED, "4.4.1")
    assert res.reason == f"connect to {path}: No such file or directory"


async def test_bad_nexthop_is_a_configuration_error() -> None:
    (res,) = (await agent().deliver(request("inet:[::1", "a@x.test"))).recipients
    assert (res.status, res.dsn) == (DEFERRED, "4.3.5")


class FakeResolver:
    def __init__(self, answers: dict[str, DnsResult]):
        self.answers = answers
        self.asked: list[str] = []

    async def addresses(self, name: str) -> DnsResult:
        self.asked.append(name)
        return self.answers[name]


async def test_host_names_resolve_through_injected_resolver(servers) -> None:
    server, _ = await start(servers, "inet")
    resolver = FakeResolver({"store.test": DnsResult(FOUND, ("127.0.0.1",))})
    result = await agent(resolver=resolver).deliver(
        request(f"store.test:{server.port}", "a@x.test"))
    assert result.recipients[0].status == SENT
    assert result.recipients[0].relay == f"store.test[127.0.0.1]:{server.port}"
    assert resolver.asked == ["store.test"]


@pytest.mark.parametrize(("answer", "status", "dsn"), [
    (DnsResult(NOT_FOUND), BOUNCED, "5.4.4"), (DnsResult(TEMPORARY), DEFERRED, "4.4.3")])
async def test_host_lookup_failures(answer, status, dsn) -> None:
    resolver = FakeResolver({"store.test": answer})
    (res,) = (await agent(resolver=resolver).deliver(
        request("inet:store.test", "a@x.test"))).recipients
    assert (res.status, res.dsn, res.relay) == (status, dsn, "none")
    assert "name=store.test type=A: Host not found" in res.reason


async def test_assume_final_marks_success_delivered(servers) -> None:
    _, nexthop = await start(servers, "inet")
    relayed = await agent().deliver(request(nexthop, "a@x.test"))
    _, nexthop = await start(servers, "inet")
    final = await agent({"lmtp_assume_final": "yes"}).deliver(request(nexthop, "a@x.test"))
    assert relayed.recipients[0].action == "relayed"
    assert final.recipients[0].action == "delivered"


async def test_pipelined_mail_refusal_then_hangup_keeps_the_reply(servers) -> None:
    _, nexthop = await start(servers, "inet", mail=b"421 4.3.2 Shutting down",
                             hangup_after_mail=True)
    result = await agent().deliver(request(nexthop, "a@x.test", "b@x.test"))
    assert {(r.status, r.dsn, r.reason) for r in result.recipients} == {(
        DEFERRED, "4.3.2", "host 127.0.0.1[127.0.0.1] said: 421 4.3.2 Shutting down "
        "(in reply to MAIL FROM command)")}


async def test_354_without_accepted_recipients_sends_no_content(servers) -> None:
    server, nexthop = await start(servers, "inet", data=b"354 go ahead anyway",
                                  rcpt={"a@x.test": b"550 5.1.1 no"})
    (res,) = (await agent().deliver(request(nexthop, "a@x.test"))).recipients
    assert (res.status, res.dsn) == (BOUNCED, "5.1.1")
    await asyncio.sleep(0.05)
    assert server.content == b""


def test_bad_lmtp_line_length_limit_names_main_cf() -> None:
    with pytest.raises(ConfigError) as info:
        agent({"lmtp_line_length_limit": "lots"})
    assert "lmtp_line_length_limit" in str(info.value)
