"""mailcore.delivery.wire: reply framing, enhanced codes, garbage, timeouts, dot-stuffing.

No sockets: replies are fed into an asyncio.StreamReader, writes land in a list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailcore.delivery.wire import (
    CHUNK,
    MAX_REPLY_LINES,
    MalformedReply,
    PeerClosed,
    Wire,
    WireReply,
    WireTimeout,
    command_bytes,
    parse_reply_line,
    stuffed_lines,
)


class FakeWriter:
    def __init__(self, fail: Exception | None = None, stall: bool = False):
        self.writes: list[bytes] = []
        self.fail = fail
        self.stall = stall
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.fail:
            raise self.fail
        self.writes.append(data)

    async def drain(self) -> None:
        if self.stall:
            await asyncio.sleep(10)

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


def wire_with(data: bytes, *, eof: bool = True, writer: FakeWriter | None = None) -> Wire:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return Wire(reader, writer or FakeWriter())  # type: ignore[arg-type]


async def test_single_line_reply_with_enhanced_code() -> None:
    reply = await wire_with(b"250 2.1.5 Recipient ok\r\n").read_reply(1)
    assert reply.code == 250
    assert reply.lines == ("2.1.5 Recipient ok",)
    assert reply.dsn == "2.1.5"
    assert reply.kind == "success"
    assert reply.text == "250 2.1.5 Recipient ok"


async def test_multi_line_reply_reads_to_the_last_line_only() -> None:
    wire = wire_with(b"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n250 next\r\n")
    reply = await wire.read_reply(1)
    assert reply.lines == ("5.1.1 first", "5.1.1 second", "5.1.1 third")
    assert reply.kind == "permanent"
    assert reply.text == "550 5.1.1 first 550 5.1.1 second 550 5.1.1 third"
    assert (await wire.read_reply(1)).code == 250  # the next reply is still in step


async def test_reply_without_enhanced_code_gets_postfix_default() -> None:
    reply = await wire_with(b"452 mailbox busy\n").read_reply(1)  # bare LF tolerated
    assert reply.dsn == "4.0.0"
    assert reply.kind == "temporary"
    assert reply.text == "452 mailbox busy"


async def test_enhanced_class_wins_over_reply_code() -> None:
    reply = await wire_with(b"550 4.2.2 mailbox full, try later\r\n").read_reply(1)
    assert reply.dsn == "4.2.2"
    assert reply.kind == "temporary"


async def test_bare_code_line() -> None:
    reply = await wire_with(b"354\r\n").read_reply(1)
    assert reply.code == 354 and reply.lines == ("",)
    assert reply.text == "354"


@pytest.mark.parametrize("garbage", [
    b"hello there\r\n", b"25 short\r\n", b"2500 long code\r\n", b"250x junk\r\n",
    b"650 bad class\r\n", b"\r\n",
])
async def test_garbage_reply_is_malformed(garbage: bytes) -> None:
    with pytest.raises(MalformedReply):
        await wire_with(garbage).read_reply(1)


async def test_garbage_inside_multi_line_reply() -> None:
    with pytest.raises(MalformedReply) as info:
        await wire_with(b"250-ok\r\nnonsense\r\n250 ok\r\n").read_reply(1)
    assert info.value.line == "nonsense"


async def test_malformed_text_is_sanitised() -> None:
    with pytest.raises(MalformedReply) as info:
        await wire_with(b"\x1b[31mred\x00\r\n").read_reply(1)
    assert all(32 <= ord(c) < 127 for c in info.value.line)


async def test_endless_multi_line_reply_is_bounded() -> None:
    with pytest.raises(MalformedReply):
        await wire_with(b"250-more\r\n" * (MAX_REPLY_LINES + 5)).read_reply(1)


async def test_overlong_line_is_malformed() -> None:
    with pytest.raises(MalformedReply):
        await wire_with(b"250 " + b"x" * 70000 + b"\r\n").read_reply(1)


async def test_eof_before_reply_is_peer_closed() -> None:
    with pytest.raises(PeerClosed):
        await wire_with(b"").read_reply(1)


async def test_eof_inside_a_line_is_peer_closed() -> None:
    with pytest.raises(PeerClosed):
        await wire_with(b"250-first\r\n250 unterminated").read_reply(1)


async def test_silence_times_out() -> None:
    with pytest.raises(WireTimeout):
        await wire_with(b"250-half\r\n", eof=False).read_reply(0.05)


async def test_zero_timeout_means_no_limit() -> None:
    reader = asyncio.StreamReader()
    wire = Wire(reader, FakeWriter())  # type: ignore[arg-type]
    task = asyncio.ensure_future(wire.read_reply(0))
    await asyncio.sleep(0.05)
    assert not task.done()
    reader.feed_data(b"220 late\r\n")
    assert (await task).code == 220


def test_parse_reply_line() -> None:
    assert parse_reply_line(b"250-PIPELINING\r\n") == (250, False, "PIPELINING")
    assert parse_reply_line(b"250 SIZE 1000\r\n") == (250, True, "SIZE 1000")


def test_lhlo_keywords() -> None:
    reply = WireReply(250, ("mx.example", "pipelining", "SIZE 1024", "8BITMIME", "DSN"))
    assert reply.keywords() == {"PIPELINING": "", "SIZE": "1024", "8BITMIME": "", "DSN": ""}


def test_commands_end_in_crlf_and_refuse_injection() -> None:
    assert command_bytes("MAIL FROM:<a@b>") == b"MAIL FROM:<a@b>\r\n"
    assert command_bytes("RCPT TO:<j\u00f6@b>") == "RCPT TO:<j\u00f6@b>\r\n".encode()
    for bad in ("RCPT TO:<a@b>\r\nDATA", "x\ny", "x\rmore"):
        with pytest.raises(ValueError):
            command_bytes(bad)


async def test_command_writes_line() -> None:
    writer = FakeWriter()
    await wire_with(b"", writer=writer).command("LHLO me.example", 1)
    assert writer.writes == [b"LHLO me.example\r\n"]


async def test_write_failure_is_peer_closed() -> None:
    wire = wire_with(b"", writer=FakeWriter(fail=ConnectionResetError()))
    with pytest.raises(PeerClosed):
        await wire.command("QUIT", 1)


async def test_stalled_write_times_out() -> None:
    wire = wire_with(b"", writer=FakeWriter(stall=True))
    with pytest.raises(WireTimeout):
        await wire.command("QUIT", 0.05)


def test_stuffed_lines() -> None:
    assert stuffed_lines(b".") == [b"..\r\n"]
    assert stuffed_lines(b".hidden") == [b"..hidden\r\n"]
    assert stuffed_lines(b"a.b") == [b"a.b\r\n"]
    assert stuffed_lines(b"crlf stored\r") == [b"crlf stored\r\n"]
    assert stuffed_lines(b"") == [b"\r\n"]


def test_long_lines_are_broken_with_crlf_space() -> None:
    pieces = stuffed_lines(b".abcdefghij", line_limit=4)
    assert pieces == [b"..abc\r\n", b" def\r\n", b" ghi\r\n", b" j\r\n"]
    assert stuffed_lines(b"x" * 10, line_limit=0) == [b"x" * 10 + b"\r\n"]


async def _lines(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_send_content_dot_stuffs_and_terminates() -> None:
    writer = FakeWriter()
    wire = wire_with(b"", writer=writer)
    await wire.send_content(_lines([b"Subject: x", b"", b".", b"..two", b"end"]), 1)
    assert b"".join(writer.writes) == b"Subject: x\r\n\r\n..\r\n...two\r\nend\r\n.\r\n"


async def test_send_content_of_empty_message() -> None:
    writer = FakeWriter()
    await wire_with(b"", writer=writer).send_content(_lines([]), 1)
    assert writer.writes == [b".\r\n"]


async def test_send_content_goes_out_in_bounded_chunks() -> None:
    writer = FakeWriter()
    line = b"y" * 999
    count = 3 * CHUNK // 1000
    await wire_with(b"", writer=writer).send_content(_lines([line] * count), 1)
    assert len(writer.writes) >= 3
    assert max(len(w) for w in writer.writes) < CHUNK + 2000
    assert b"".join(writer.writes) == (line + b"\r\n") * count + b".\r\n"
