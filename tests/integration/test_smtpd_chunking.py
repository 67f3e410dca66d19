"""BDAT (RFC 3030 CHUNKING) against a running smtpd over raw loopback sockets (aiosmtplib
and smtplib do not send BDAT): chunked and pipelined messages, BDAT 0 LAST, the size limit
across chunks, syntax and sequencing errors, RSET mid-message, SMTP commands and
CRLF.CRLF inside chunks stored as content, byte-exact storage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosmtplib
from support.client import raw_session, reply_lines
from support.smtpd import running_server

ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\n"


def chunk(data: bytes, last: bool = False) -> bytes:
    return f"BDAT {len(data)}{' LAST' if last else ''}\r\n".encode() + data


def queued_id(line: str) -> str:
    assert " queued as " in line, line
    return line.rsplit(" ", 1)[1]


async def test_single_chunk_is_queued_byte_exact(tmp_path: Path) -> None:
    body = (b"Subject: bin\r\n\r\n\x00nul \xff8bit\r\ncr\ralone\r\n \r\n\ttab\r\n"
            + b"x" * 3000 + b"\r\nno final newline")
    async with running_server(tmp_path, {"line_length_limit": "1000"}) as srv:
        transcript = await raw_session(srv.host, srv.port,
                                       ENVELOPE + chunk(body, last=True) + b"QUIT\r\n")
        lines = reply_lines(transcript)
        assert lines[-2] == f"250 2.0.0 Ok: {len(body)} bytes queued as {queued_id(lines[-2])}"
        [message] = await srv.messages()
        content = await srv.content(message.queue_id)
        # The 3000-octet line is stored in line_length_limit pieces, as DATA does.
        expected = (b"Subject: bin\n\n\x00nul \xff8bit\ncr\ralone\n \n\ttab\n"
                    + b"x" * 1000 + b"\n" + b"x" * 1000 + b"\n" + b"x" * 1000 + b"\n"
                    + b"no final newline\n")
        assert content.endswith(expected)
        assert "ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 commands=5" in srv.log


async def test_many_chunks_sent_one_at_a_time(tmp_path: Path) -> None:
    text = b"Subject: many\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(200))
    pieces = [text[i:i + 97] for i in range(0, len(text), 97)]  # lines split across chunks
    async with running_server(tmp_path) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            async with asyncio.timeout(10):
                await reader.readline()
                writer.write(ENVELOPE)
                while not (await reader.readline()).startswith(b"250 2.1.5"):
                    pass
                for piece in pieces:
                    writer.write(chunk(piece))
                    expected = f"250 2.0.0 Ok: {len(piece)} bytes\r\n".encode()
                    assert await reader.readline() == expected
                writer.write(b"BDAT 0 LAST\r\n")
                final = (await reader.readline()).decode().rstrip()
                assert final.startswith(f"250 2.0.0 Ok: {len(text)} bytes queued as ")
        finally:
            writer.close()
        [message] = await srv.messages()
        assert message.queue_id == queued_id(final)
        content = await srv.content(message.queue_id)
        assert content.endswith(text.replace(b"\r\n", b"\n"))


async def test_pipelined_chunks_and_a_second_transaction(tmp_path: Path) -> None:
    first = [b"Subject: one\r\n", b"\r\nbody ", b"one\r\n"]
    payload = (ENVELOPE + b"".join(chunk(p) for p in first) + b"BDAT 0 LAST\r\n"
               + b"MAIL FROM:<c@client.test>\r\nRCPT TO:<d@example.test>\r\n"
               + chunk(b"Subject: two\r\n\r\nbody two\r\n", last=True) + b"QUIT\r\n")
    async with running_server(tmp_path) as srv:
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[4:7] == ["250 2.0.0 Ok: 14 bytes", "250 2.0.0 Ok: 7 bytes",
                              "250 2.0.0 Ok: 5 bytes"]
        assert lines[7].startswith("250 2.0.0 Ok: 26 bytes queued as ")
        assert lines[8:10] == ["250 2.1.0 Ok", "250 2.1.5 Ok"]
        assert lines[10].startswith("250 2.0.0 Ok: 26 bytes queued as ")
        assert lines[11] == "221 2.0.0 Bye"
        contents = {m.sender: await srv.content(m.queue_id) for m in await srv.messages()}
        assert contents["a@client.test"].endswith(b"Subject: one\n\nbody one\n")
        assert contents["c@client.test"].endswith(b"Subject: two\n\nbody two\n")


async def test_smtp_commands_and_dot_inside_chunks_are_content(tmp_path: Path) -> None:
    smuggled = (b"Subject: legit\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@client.test>\r\n"
                b"RCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
                b"evil\r\n.\r\nQUIT\r\n")
    async with running_server(tmp_path) as srv:
        # Also split so that the end-of-data sequence straddles two chunks.
        payload = (ENVELOPE + chunk(smuggled[:25]) + chunk(smuggled[25:])
                   + b"BDAT 0 LAST\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert [line[:3] for line in lines[-4:]] == ["250", "250", "250", "221"]
        [message] = await srv.messages()  # exactly one message
        assert message.sender == "a@client.test"
        assert [r.address for r in message.recipients] == ["b@example.test"]
        assert (await srv.content(message.queue_id)).endswith(
            smuggled.replace(b"\r\n", b"\n"))


async def test_bdat_0_last_alone_and_size_limit_across_chunks(tmp_path: Path) -> None:
    async with running_server(tmp_path, {"message_size_limit": "1000"}) as srv:
        lines = reply_lines(await raw_session(
            srv.host, srv.port, ENVELOPE + b"BDAT 0 LAST\r\nQUIT\r\n"))
        assert lines[-2].startswith("250 2.0.0 Ok: 0 bytes queued as ")
        payload = (ENVELOPE + chunk(b"a" * 600) + chunk(b"b" * 600)
                   + chunk(b"c" * 10, last=True) + b"NOOP\r\nQUIT\r\n")
        lines = reply_lines(await raw_session(srv.host, srv.port, payload))
        assert lines[-5:] == ["250 2.0.0 Ok: 600 bytes",
                              "552 5.3.4 Message size exceeds fixed limit",
                              "552 5.3.4 Message size exceeds fixed limit",
                              "250 2.0.0 Ok", "221 2.0.0 Bye"]
        assert len(await srv.messages()) == 1  # only the empty message
        assert list((tmp_path / "queue").rglob("*.spool")) == []


async def test_bad_syntax_and_sequencing(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        bad = reply_lines(await raw_session(
            srv.host, srv.port, ENVELOPE + b"BDAT 5 LAST please\r\nQUIT\r\n"))
        assert bad[-1] == "501 5.5.4 Syntax: BDAT count [LAST]"  # and the server hung up
        assert "malformed BDAT command syntax" in srv.log
        lines = reply_lines(await raw_session(srv.host, srv.port, (
            b"EHLO client.test\r\nBDAT 4\r\nRSETMAIL FROM:<a@client.test>\r\n"
            b"BDAT 4 LAST\r\nQUITRCPT TO:<b@example.test>\r\n" + chunk(b"x\r\n")
            + b"DATA\r\n" + chunk(b"y\r\n", last=True) + b"BDAT 4 LAST\r\nNOOPQUIT\r\n")))
        assert lines[2:] == ["503 5.5.1 Error: need RCPT command",
                             "250 2.1.0 Ok",
                             "554 5.5.1 Error: no valid recipients",
                             "250 2.1.5 Ok",
                             "250 2.0.0 Ok: 3 bytes",
                             "503 5.5.1 Error: DATA command after BDAT",
                             lines[8],
                             "503 5.5.1 Error: need RCPT command",
                             "221 2.0.0 Bye"]
        assert lines[8].startswith("250 2.0.0 Ok: 6 bytes queued as ")
        assert "bdat=2/5" in srv.log and "data=0/1" in srv.log


async def test_rset_mid_message_discards_it(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            async with asyncio.timeout(10):
                await reader.readline()
                # Large enough to be spooled to a file rather than kept in memory.
                big = b"Subject: dropped\r\n\r\n" + (b"z" * 998 + b"\r\n") * 600
                writer.write(ENVELOPE + chunk(big))
                while not (await reader.readline()).startswith(b"250 2.0.0 Ok: %d" % len(big)):
                    pass
                spool = tmp_path / "queue" / "spool"
                assert list(spool.iterdir()) != []
                writer.write(b"RSET\r\n")
                assert await reader.readline() == b"250 2.0.0 Ok\r\n"
                assert list(spool.iterdir()) == [], "the partial message was not removed"
                writer.write(b"BDAT 2 LAST\r\nxyQUIT\r\n")
                assert await reader.readline() == b"503 5.5.1 Error: need RCPT command\r\n"
                assert await reader.readline() == b"221 2.0.0 Bye\r\n"
        finally:
            writer.close()
        assert await srv.messages() == []


async def test_aiosmtplib_sees_chunking_and_still_sends_with_data(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        client = aiosmtplib.SMTP(hostname=srv.host, port=srv.port,
                                 local_hostname="client.test", timeout=10)
        async with client:
            await client.ehlo()
            assert client.supports_extension("chunking")
            errors, reply = await client.sendmail("a@client.test", ["b@example.test"],
                                                  b"Subject: via data\r\n\r\nok\r\n")
            assert errors == {} and reply.startswith("2.0.0 Ok: queued as ")
        assert len(await srv.messages()) == 1
