"""smtpd limits and client names on loopback: timeouts, the session deadline, connection
count, error and junk limits, many concurrent sessions, and peer name lookups through the
test DNS server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosmtplib
from support.client import raw_session, reply_lines
from support.dnsserver import DnsServer
from support.smtpd import running_server


async def test_idle_client_gets_421_timeout(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_timeout": "1s"}) as srv:
        started = time.monotonic()
        transcript = await raw_session(srv.host, srv.port, b"EHLO client.test\r\n")
        assert reply_lines(transcript)[-1] == "421 4.4.2 mx.test Error: timeout exceeded"
        assert 0.9 < time.monotonic() - started < 5
        assert "timeout after EHLO from unknown[127.0.0.1]" in srv.log


async def test_session_time_limit_ends_a_busy_session(tmp_path: Path) -> None:
    settings = {"smtpd_session_time_limit": "1s", "smtpd_timeout": "10s",
                "smtpd_junk_command_limit": "1000"}
    async with running_server(tmp_path, settings) as srv:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        replies = [await reader.readline()]
        try:
            for _ in range(30):  # a NOOP every 0.1 s: never idle, but the session ends
                writer.write(b"NOOP\r\n")
                replies.append(await reader.readline())
                if replies[-1].startswith(b"421"):
                    break
                await asyncio.sleep(0.1)
        finally:
            writer.close()
        assert replies[-1] == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
        assert time.monotonic() - started < 2.5
        assert "session time limit exceeded after NOOP" in srv.log


async def test_timeout_during_data_keeps_nothing(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_timeout": "1s"}) as srv:
        transcript = await raw_session(srv.host, srv.port, (
            b"EHLO c.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\n"
            b"DATA\r\nSubject: half\r\n\r\nno end"))
        assert reply_lines(transcript)[-1] == "421 4.4.2 mx.test Error: timeout exceeded"
        assert await srv.messages() == []
        assert list((tmp_path / "queue" / "spool").iterdir()) == []


async def test_connection_count_limit(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_client_connection_count_limit": "2"}) as srv:
        held = [await asyncio.open_connection(srv.host, srv.port) for _ in range(2)]
        try:
            for reader, _ in held:
                assert (await reader.readline()).startswith(b"220 ")
            transcript = await raw_session(srv.host, srv.port, b"")
            assert reply_lines(transcript) == [
                "421 4.7.0 mx.test Error: too many connections from 127.0.0.1"]
            # Another client address is counted separately.
            other = await raw_session(srv.host, srv.port, b"QUIT\r\n",
                                      local_addr=("127.0.0.3", 0))
            assert reply_lines(other)[0].startswith("220 ")
        finally:
            for _, writer in held:
                writer.close()


async def test_hard_error_limit(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_hard_error_limit": "3"}) as srv:
        lines = reply_lines(await raw_session(srv.host, srv.port, b"FOO\r\n" * 5))
        assert lines[1:] == ["502 5.5.2 Error: command not recognized"] * 3 + [
            "421 4.7.0 mx.test Error: too many errors"]
        assert "unknown=0/3 commands=0/3" in srv.log


async def test_soft_error_limit_sleeps(tmp_path: Path) -> None:
    settings = {"smtpd_soft_error_limit": "1", "smtpd_error_sleep_time": "0.4s"}
    async with running_server(tmp_path, settings) as srv:
        started = time.monotonic()
        lines = reply_lines(await raw_session(srv.host, srv.port, b"FOO\r\nNOOP\r\nQUIT\r\n"))
        assert [line[:3] for line in lines] == ["220", "502", "250", "221"]
        assert time.monotonic() - started >= 0.8  # NOOP and QUIT replies were delayed


async def test_junk_command_limit_counts_as_errors(tmp_path: Path) -> None:
    settings = {"smtpd_junk_command_limit": "2", "smtpd_hard_error_limit": "2"}
    async with running_server(tmp_path, settings) as srv:
        lines = reply_lines(await raw_session(srv.host, srv.port, b"NOOP\r\n" * 6))
        assert lines[1:] == ["250 2.0.0 Ok"] * 4 + ["421 4.7.0 mx.test Error: too many errors"]


async def test_command_line_too_long(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        lines = reply_lines(await raw_session(
            srv.host, srv.port, b"NOOP " + b"x" * 5000 + b"\r\nQUIT\r\n"))
        assert lines[1:] == ["500 5.5.2 Error: line too long", "221 2.0.0 Bye"]


async def test_fifty_concurrent_sessions(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"smtpd_client_connection_count_limit": "0"}) as srv:
        body = b"Subject: load\r\n\r\n" + b"0123456789" * 2000 + b"\r\n"

        async def one(n: int) -> str:
            client = aiosmtplib.SMTP(hostname=srv.host, port=srv.port,
                                     local_hostname="client.test", timeout=30)
            async with client:
                _, answer = await client.sendmail(f"s{n}@client.test", ["b@example.test"], body)
            return answer.rsplit(" ", 1)[1]

        queued = await asyncio.gather(*(one(n) for n in range(50)))
        messages = await srv.messages()
        assert sorted(queued) == sorted(m.queue_id for m in messages)
        assert len({m.sender for m in messages}) == 50


RECORDS = {
    "1.0.0.127.in-addr.arpa": {"PTR": ["mail.client.test"]},
    "mail.client.test": {"A": ["127.0.0.1"]},
    "2.0.0.127.in-addr.arpa": {"PTR": ["liar.test"]},
    "liar.test": {"A": ["192.0.2.1"]},
}


async def test_peername_lookup_through_the_test_dns_server(tmp_path: Path) -> None:
    async with DnsServer(RECORDS, servfail=["3.0.0.127.in-addr.arpa"]) as dns:
        settings = {"smtpd_peername_lookup": "yes", "dns_nameservers": dns.nameserver}
        async with running_server(tmp_path, settings) as srv:
            payload = (b"EHLO c.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>"
                       b"\r\nDATA\r\nSubject: dns\r\n\r\nx\r\n.\r\nQUIT\r\n")
            await raw_session(srv.host, srv.port, payload)
            await raw_session(srv.host, srv.port, b"QUIT\r\n", local_addr=("127.0.0.2", 0))
            await raw_session(srv.host, srv.port, b"QUIT\r\n", local_addr=("127.0.0.3", 0))
            log = srv.log
            assert "connect from mail.client.test[127.0.0.1]" in log
            assert "connect from unknown[127.0.0.2]" in log
            assert "hostname liar.test does not resolve to address 127.0.0.2" in log
            assert "connect from unknown[127.0.0.3]" in log
            [message] = await srv.messages()
            content = await srv.content(message.queue_id)
            assert content.startswith(b"Received: from c.test (mail.client.test [127.0.0.1])")
            assert message.attrs["client_name"] == "mail.client.test"
