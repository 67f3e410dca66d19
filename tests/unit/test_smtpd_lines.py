"""LineReader and the DATA reader, fed from memory: terminators, cuts, dots, memory."""

from __future__ import annotations

import tracemalloc

import pytest

from mailcore.cleanup import CleanupReject
from mailcore.smtpd import data
from mailcore.smtpd.lines import BARE_LF, CRLF, CUT, EOF, LineReader


def reader(payload: bytes, chunk: int = 7) -> LineReader:
    pieces = [payload[i:i + chunk] for i in range(0, len(payload), chunk)]

    async def read(n: int) -> bytes:
        return pieces.pop(0) if pieces else b""
    return LineReader(read)


async def all_lines(lines: LineReader, limit: int) -> list[tuple[bytes, str]]:
    out = []
    for _ in range(1000):
        item = await lines.next(limit)
        out.append(item)
        if item[1] == EOF:
            return out
    raise AssertionError("no EOF")


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
async def test_terminators_and_bare_cr(chunk: int) -> None:
    got = await all_lines(reader(b"a\r\nb\nc\rd\r\n\r\nend", chunk), 100)
    assert got == [(b"a", CRLF), (b"b", BARE_LF), (b"c\rd", CRLF), (b"", CRLF),
                   (b"end", EOF)]


@pytest.mark.parametrize("chunk", [1, 4, 64])
async def test_long_lines_are_cut_without_splitting_crlf(chunk: int) -> None:
    got = await all_lines(reader(b"abcd\rx\r\n1234\r\n", chunk), 4)
    assert got == [(b"abcd", CUT), (b"\rx", CRLF), (b"1234", CRLF), (b"", EOF)]
    got = await all_lines(reader(b"abc\r\n", chunk), 3)
    assert got == [(b"abc", CRLF), (b"", EOF)]
    got = await all_lines(reader(b"ab\r\r\n", chunk), 3)
    assert got == [(b"ab\r", CRLF), (b"", EOF)]
    got = await all_lines(reader(b"abc\r\r\n", chunk), 3)
    assert got == [(b"abc", CUT), (b"\r", CRLF), (b"", EOF)]


class Writer:
    def __init__(self, fail_on: bytes | None = None):
        self.lines: list[bytes] = []
        self.fail_on = fail_on

    async def write_line(self, line: bytes) -> None:
        if line == self.fail_on:
            raise CleanupReject(554, "5.4.6", "Too many hops")
        self.lines.append(line)


async def receive(payload: bytes, *, forbid: bool = True, limit: int = 100,
                  writer: Writer | None = None) -> tuple[str, list[bytes], LineReader]:
    lines = reader(payload, chunk=5)
    writer = writer or Writer()
    outcome = await data.receive(lines, data.Feed(writer), limit=limit, forbid_bare_lf=forbid)
    return outcome, writer.lines, lines


async def test_dot_unstuffing_and_end() -> None:
    outcome, got, rest = await receive(b"S: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    assert (outcome, got) == (data.END, [b"S: x", b"", b".dot"])
    assert await rest.next(100) == (b"QUIT", CRLF)  # the next command is left unread


@pytest.mark.parametrize("variant", [b"\r.\r\n", b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n .\r\n"])
async def test_variants_without_lf_never_end_data(variant: bytes) -> None:
    outcome, got, _ = await receive(b"a" + variant + b"MAIL FROM:<x@y>\r\n.\r\n")
    assert outcome == data.END
    assert b"MAIL FROM:<x@y>" in b"\n".join(got)


@pytest.mark.parametrize("variant", [b"\n.\n", b"\n.\r\n", b"\r.\n", b"\n.\r"])
async def test_bare_lf_variants(variant: bytes) -> None:
    payload = b"a" + variant + b"MAIL FROM:<x@y>\r\n.\r\n"
    assert (await receive(payload))[0] == data.BARE_LF
    outcome, got, _ = await receive(payload, forbid=False)
    assert outcome == data.END  # only at the final CRLF . CRLF
    assert got[-1].endswith(b"MAIL FROM:<x@y>")


async def test_cut_pieces_are_not_unstuffed_and_fold_in_headers() -> None:
    outcome, got, _ = await receive(b"X-A: 123456789\r\n\r\nabcdef.gh\r\n.\r\n", limit=6)
    assert outcome == data.END
    assert got == [b"X-A: 1", b"\t234567", b"\t89", b"", b"abcdef", b".gh"]


async def test_cleanup_reject_keeps_reading_to_the_end() -> None:
    writer = Writer(fail_on=b"Subject: x")
    feed = data.Feed(writer)
    lines = reader(b"Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n")
    outcome = await data.receive(lines, feed, limit=100, forbid_bare_lf=True)
    assert outcome == data.END and feed.rejected is not None and feed.rejected.code == 554
    assert await lines.next(100) == (b"NOOP", CRLF)


async def test_eof_in_data() -> None:
    assert (await receive(b"abc\r\n"))[0] == data.EOF


async def test_memory_stays_bounded_for_a_large_message() -> None:
    line = b"x" * 76 + b"\r\n"
    total = 20 * 1024 * 1024
    block = line * (64 * 1024 // len(line))
    sent = 0

    async def read(n: int) -> bytes:
        nonlocal sent
        if sent >= total:
            return b".\r\n" if sent == total and not setattr(read, "done", True) else b""
        sent += len(block)
        if sent >= total:
            sent = total
        return block

    class Sink:
        count = 0

        async def write_line(self, data_line: bytes) -> None:
            Sink.count += 1

    tracemalloc.start()
    try:
        outcome = await data.receive(LineReader(read), data.Feed(Sink()), limit=2048,
                                     forbid_bare_lf=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == data.END
    assert Sink.count > 200_000
    assert peak < 1024 * 1024  # a read chunk and a line, not the message
