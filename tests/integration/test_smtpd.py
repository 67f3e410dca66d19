"""smtpd against real clients on loopback: acceptance, reply codes, relay control,
pipelining, SMTPUTF8, smuggling and size limits. Each test starts its own server."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import subprocess
from pathlib import Path

import aiosmtplib
import pytest
from support.client import raw_session, reply_codes, reply_lines
from support.smtpd import RunningServer, running_server

ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\n"


def _smtplib_send(srv: RunningServer, sender: str, rcpts: list[str], body: bytes,
                  **options: object) -> dict:
    with smtplib.SMTP(srv.host, srv.port, local_hostname="client.test", timeout=10) as c:
        return c.sendmail(sender, rcpts, body, **options)  # type: ignore[arg-type]


async def test_smtplib_message_is_queued_with_received_header(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        body = b"Subject: hello\r\n\r\nline one\r\n.leading dot\r\n"
        refused = await asyncio.to_thread(_smtplib_send, srv, "a@client.test",
                                          ["b@example.test", "c@example.test"], body)
        assert refused == {}
        [message] = await srv.messages()
        assert message.sender == "a@client.test"
        assert [r.address for r in message.recipients] == ["b@example.test", "c@example.test"]
        content = await srv.content(message.queue_id)
        assert content.startswith(b"Received: from client.test (unknown [127.0.0.1])\n")
        assert f"with ESMTP id {message.queue_id}".encode() in content
        assert content.endswith(b"Subject: hello\n\nline one\n.leading dot\n")
        log = srv.log
        assert "connect from unknown[127.0.0.1]" in log
        assert f"{message.queue_id}: client=unknown[127.0.0.1]" in log
        assert ("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=2 data=1 quit=1 "
                "commands=6") in log


async def test_250_names_the_committed_queue_id(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        transcript = await raw_session(
            srv.host, srv.port, ENVELOPE + b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        last_250 = [line for line in reply_lines(transcript) if "queued as" in line]
        assert len(last_250) == 1
        queue_id = last_250[0].rsplit(" ", 1)[1]
        assert last_250[0] == f"250 2.0.0 Ok: queued as {queue_id}"
        assert await srv.queue.get(queue_id) is not None


async def test_ehlo_keywords_and_discard(tmp_path: Path) -> None:
    settings = {"message_size_limit": "5000", "smtpd_discard_ehlo_keywords": "etrn, dsn"}
    async with running_server(tmp_path, settings) as srv:
        transcript = await raw_session(srv.host, srv.port, b"EHLO client.test\r\nQUIT\r\n")
        lines = transcript.decode().split("\r\n")
        assert lines[0] == "220 mx.test ESMTP mailcore"
        assert lines[1:10] == ["250-mx.test", "250-PIPELINING", "250-SIZE 5000", "250-VRFY",
                               "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-SMTPUTF8",
                               "250 CHUNKING", "221 2.0.0 Bye"]


async def test_aiosmtplib_utf8_addresses_and_8bit_body(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        client = aiosmtplib.SMTP(hostname=srv.host, port=srv.port,
                                 local_hostname="client.test", timeout=10)
        async with client:
            body = "Subject: grüße\r\n\r\nÄrger über Ümlaute\r\n".encode()
            errors, reply = await client.sendmail(
                "jürgen@client.test", ["üser@example.test"], body,
                mail_options=["SMTPUTF8", "BODY=8BITMIME"])
            assert errors == {}
            assert reply.startswith("2.0.0 Ok: queued as ")
        [message] = await srv.messages()
        assert message.sender == "jürgen@client.test"
        assert message.recipients[0].address == "üser@example.test"
        assert message.attrs.get("smtputf8") == "yes"
        assert "Ärger über Ümlaute".encode() in await srv.content(message.queue_id)


async def test_utf8_address_without_smtputf8_is_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        transcript = await raw_session(srv.host, srv.port, (
            "EHLO client.test\r\nMAIL FROM:<jürgen@client.test>\r\nQUIT\r\n").encode())
        assert reply_lines(transcript)[2] == (
            "553 5.6.7 Must declare SMTPUTF8 to send unicode address")


async def test_swaks(tmp_path: Path) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        if os.environ.get("CI"):
            pytest.fail("swaks is not installed")
        pytest.skip("swaks is not installed")
    async with running_server(tmp_path) as srv:
        result = await asyncio.to_thread(
            subprocess.run,
            [swaks, "--server", srv.host, "--port", str(srv.port), "--helo", "client.test",
             "--from", "a@client.test", "--to", "b@example.test", "--pipeline",
             "--header", "Subject: from swaks", "--body", "swaks body"],
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "250 2.0.0 Ok: queued as" in result.stdout
        [message] = await srv.messages()
        assert b"Subject: from swaks" in await srv.content(message.queue_id)


async def test_relay_denied_for_client_outside_mynetworks(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        transcript = await raw_session(srv.host, srv.port, (
            b"EHLO outside.test\r\nMAIL FROM:<a@outside.test>\r\n"
            b"RCPT TO:<x@elsewhere.test>\r\nRCPT TO:<b@example.test>\r\nQUIT\r\n"),
            local_addr=("127.0.0.2", 0))
        lines = reply_lines(transcript)
        assert lines[3] == "554 5.7.1 <x@elsewhere.test>: Relay access denied"
        assert lines[4] == "250 2.1.5 Ok"
        assert ("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <x@elsewhere.test>: "
                "Relay access denied; from=<a@outside.test> to=<x@elsewhere.test> "
                "proto=ESMTP helo=<outside.test>") in srv.log
        # From inside mynetworks the same recipient is relayed.
        inside = await raw_session(srv.host, srv.port, (
            b"EHLO inside.test\r\nMAIL FROM:<a@client.test>\r\n"
            b"RCPT TO:<x@elsewhere.test>\r\nQUIT\r\n"))
        assert reply_codes(inside)[3] == 250


async def test_defer_unauth_destination_answers_454(tmp_path: Path) -> None:
    settings = {"smtpd_relay_restrictions": "permit_mynetworks, defer_unauth_destination"}
    async with running_server(tmp_path, settings) as srv:
        transcript = await raw_session(srv.host, srv.port, (
            b"HELO outside.test\r\nMAIL FROM:<a@outside.test>\r\n"
            b"RCPT TO:<x@elsewhere.test>\r\nQUIT\r\n"), local_addr=("127.0.0.2", 0))
        assert reply_lines(transcript)[3] == "454 4.7.1 <x@elsewhere.test>: Relay access denied"


DIALOGUE = [
    (b"FOO bar", "502 5.5.2 Error: command not recognized"),
    (b"RCPT TO:<b@example.test>", "503 5.5.1 Error: need MAIL command"),
    (b"DATA", "503 5.5.1 Error: need RCPT command"),
    (b"EHLO", "501 5.5.4 Syntax: EHLO hostname"),
    (b"HELO client.test", "250 mx.test"),
    (b"MAIL TO:<a@client.test>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (b"MAIL FROM:<a@client.test> SIZE=99999999", "552 5.3.4 Message size exceeds fixed limit"),
    (b"MAIL FROM:<a@client.test> FOO=bar", "555 5.5.4 Unsupported option: FOO"),
    (b"MAIL FROM:<a@client.test> BODY=BINARYMIME", "501 5.5.4 Unsupported BODY parameter"),
    (b"MAIL FROM:<a@client.test> RET=MAYBE", "501 5.5.4 Bad RET parameter syntax"),
    (b"MAIL FROM:<a@client.test> ENVID=a+0Ab", "501 5.5.4 Bad ENVID parameter syntax"),
    (b"MAIL FROM:<a b@client.test>", "501 5.1.7 Bad sender address syntax"),
    (b"MAIL FROM:<a@client.test> SIZE=100 RET=HDRS ENVID=QQ+2Bx", "250 2.1.0 Ok"),
    (b"MAIL FROM:<a@client.test>", "503 5.5.1 Error: nested MAIL command"),
    (b"DATA", "554 5.5.1 Error: no valid recipients"),
    (b'RCPT TO:<"|/bin/sh"@example.test>', "501 5.1.3 Bad recipient address syntax"),
    (b'RCPT TO:<"../../etc/passwd"@example.test>', "501 5.1.3 Bad recipient address syntax"),
    (b'RCPT TO:<"-oQ/tmp"@example.test>', "501 5.1.3 Bad recipient address syntax"),
    (b'RCPT TO:<"a\\\rb"@example.test>', "501 5.1.3 Bad recipient address syntax"),
    (b"RCPT TO:<b@example.test> NOTIFY=SOMETIMES",
     "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
    (b"RCPT TO:<b@example.test> ORCPT=rfc822", "501 5.5.4 Bad ORCPT parameter syntax"),
    (b"RCPT TO:<b@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b+40example.test",
     "250 2.1.5 Ok"),
    (b"VRFY b@example.test", "252 2.0.0 b@example.test"),
    (b"ETRN example.test", "503 5.5.1 Error: MAIL transaction in progress"),
    (b"RSET", "250 2.0.0 Ok"),
    (b"ETRN example.test", "459 4.3.0 <example.test>: service unavailable"),  # not a relay domain
    (b"NOOP", "250 2.0.0 Ok"),
    (b"", "500 5.5.2 Error: bad syntax"),
    (b"QUIT", "221 2.0.0 Bye"),
]


async def test_reply_codes_follow_postfix(tmp_path: Path) -> None:
    settings = {"message_size_limit": "100000", "smtpd_hard_error_limit": "100"}
    async with running_server(tmp_path, settings) as srv:
        payload = b"".join(command + b"\r\n" for command, _ in DIALOGUE)
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[0] == "220 mx.test ESMTP mailcore"
        assert lines[1:] == [expected for _, expected in DIALOGUE]
        assert await srv.messages() == []


async def test_dsn_parameters_are_kept_per_recipient(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        await raw_session(srv.host, srv.port, (
            b"EHLO client.test\r\nMAIL FROM:<a@client.test> RET=HDRS ENVID=id+2B1\r\n"
            b"RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+40example.test\r\n"
            b"RCPT TO:<c@example.test> NOTIFY=NEVER\r\n"
            b"DATA\r\nSubject: dsn\r\n\r\nx\r\n.\r\nQUIT\r\n"))
        [message] = await srv.messages()
        assert (message.ret, message.envid) == ("HDRS", "id+1")
        first, second = message.recipients
        # cleanup's duplicate elimination normalises NOTIFY to a sorted list
        assert set(first.notify.split(",")) == {"SUCCESS", "FAILURE"}
        assert first.orcpt == "rfc822;B@example.test"
        assert (second.notify, second.orcpt) == ("NEVER", None)


async def test_vrfy_disabled_and_helo_required(tmp_path: Path) -> None:
    settings = {"disable_vrfy_command": "yes", "smtpd_helo_required": "yes"}
    async with running_server(tmp_path, settings) as srv:
        lines = reply_lines(await raw_session(srv.host, srv.port, (
            b"VRFY b@example.test\r\nMAIL FROM:<a@client.test>\r\nQUIT\r\n")))
        assert lines[1:] == ["502 5.5.1 VRFY command is disabled",
                             "503 5.5.1 Error: send HELO/EHLO first", "221 2.0.0 Bye"]


async def test_recipient_limit(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_recipient_limit": "2"}) as srv:
        rcpts = b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(3))
        lines = reply_lines(await raw_session(srv.host, srv.port, (
            b"EHLO c.test\r\nMAIL FROM:<a@client.test>\r\n" + rcpts +
            b"DATA\r\nx\r\n.\r\nQUIT\r\n")))
        assert lines[3:6] == ["250 2.1.5 Ok", "250 2.1.5 Ok",
                              "452 4.5.3 Error: too many recipients"]
        [message] = await srv.messages()
        assert len(message.recipients) == 2


async def test_pipelined_transactions_are_answered_in_order(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        one = b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
        # Everything in one write, the second transaction right after the first final dot.
        payload = (b"EHLO client.test\r\n" + one + b"Subject: 1\r\n\r\none\r\n.\r\n" +
                   one + b"Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        codes = [int(line[:3]) for line in lines]
        assert codes == [220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
        queued = [line.rsplit(" ", 1)[1] for line in lines if "queued as" in line]
        messages = await srv.messages()
        assert sorted(queued) == sorted(m.queue_id for m in messages)
        bodies = sorted([await srv.content(q) for q in queued])
        assert bodies[0].endswith(b"one\n") and bodies[1].endswith(b"two\n")


SMUGGLING = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-lf": b"\r.\n",
    "lf-dot-cr": b"\n.\r",
    "nul-dot": b"\r\n\x00.\r\n",
}


@pytest.mark.parametrize("forbid", ["yes", "no"])
@pytest.mark.parametrize("variant", list(SMUGGLING), ids=list(SMUGGLING))
async def test_smuggling_never_makes_a_second_message(tmp_path: Path, variant: str,
                                                      forbid: str) -> None:
    async with running_server(tmp_path, {"smtpd_forbid_bare_newline": forbid}) as srv:
        smuggled = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<b@example.test>\r\n"
                    b"DATA\r\nSubject: smuggled\r\n\r\nforged\r\n")
        payload = (ENVELOPE + b"DATA\r\nSubject: real\r\n\r\nbody" + SMUGGLING[variant] +
                   smuggled + b"\r\n.\r\nQUIT\r\n")
        transcript = await raw_session(srv.host, srv.port, payload)
        messages = await srv.messages()
        assert len(messages) <= 1
        assert all(m.sender == "a@client.test" for m in messages)
        assert transcript.count(b"queued as") == len(messages)
        if forbid == "yes" and b"\n" in SMUGGLING[variant].replace(b"\r\n", b""):
            assert reply_lines(transcript)[-1] == "521 5.5.2 mx.test Error: bare <LF> received"
            assert messages == []
        else:
            assert len(messages) == 1
            assert b"forged" in await srv.content(messages[0].queue_id)


async def test_bare_lf_in_commands_is_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        transcript = await raw_session(srv.host, srv.port, b"EHLO client.test\nNOOP\r\n")
        assert reply_lines(transcript)[1:] == ["521 5.5.2 mx.test Error: bare <LF> received"]


async def test_message_size_limit_while_receiving(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"message_size_limit": "2000"}) as srv:
        big = b"x" * 70 + b"\r\n"
        payload = (ENVELOPE + b"DATA\r\n" + big * 100 + b".\r\nNOOP\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[-3:] == ["552 5.3.4 Message size exceeds fixed limit", "250 2.0.0 Ok",
                              "221 2.0.0 Bye"]
        assert await srv.messages() == []
        assert list((tmp_path / "queue" / "spool").iterdir()) == []


async def test_hopcount_limit(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"hopcount_limit": "3"}) as srv:
        hops = b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n" * 3
        payload = ENVELOPE + b"DATA\r\n" + hops + b"Subject: loop\r\n\r\nx\r\n.\r\nQUIT\r\n"
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[-2:] == ["554 5.4.6 Too many hops", "221 2.0.0 Bye"]
        assert await srv.messages() == []


async def test_long_lines_are_split_not_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"line_length_limit": "1000"}) as srv:
        long_header = b"X-Long: " + b"h" * 2500
        long_body = b"." + b"b" * 4500
        payload = (ENVELOPE + b"DATA\r\n" + long_header + b"\r\nSubject: s\r\n\r\n" +
                   b"." + long_body + b"\r\nend\r\n.\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[-2].startswith("250 2.0.0 Ok: queued as")
        [message] = await srv.messages()
        content = await srv.content(message.queue_id)
        assert content.count(b"h") >= 2500 and content.count(b"b") >= 4500
        assert b"\nSubject: s\n\n" in content  # the long header stayed in the header section
        assert content.endswith(b"\nend\n")
        body = content.split(b"\n\n", 1)[1]
        assert body.startswith(b"." + b"b")  # one dot removed, the other kept
