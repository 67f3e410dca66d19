"""BDAT (RFC 3030 CHUNKING): argument syntax, chunk reading and line splitting, and whole
sessions over an in-memory stream (sequencing, size limit, failed chunks, RSET, smuggling
attempts inside chunks, byte-exact storage)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from support.fakes import Stream

from mailcore.cleanup import CleanupSettings, MessageWriter, open_writer
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope
from mailcore.restrictions import Facts, Verdict
from mailcore.smtpd.bdat import (
    OK,
    BdatCommand,
    ChunkReader,
    LineSplitter,
    parse_bdat,
    receive_chunk,
)
from mailcore.smtpd.data import Feed
from mailcore.smtpd.lines import BARE_LF, CRLF, EOF
from mailcore.smtpd.session import Session
from mailcore.smtpd.settings import SmtpdSettings


# --- syntax ---------------------------------------------------------------------------
@pytest.mark.parametrize(("arg", "expected"), [
    ("0 LAST", BdatCommand(0, True)),
    ("10", BdatCommand(10, False)),
    ("10 last", BdatCommand(10, True)),
    ("007  LAST", BdatCommand(7, True)),
    ("999999999999999999", BdatCommand(999999999999999999, False)),
])
def test_bdat_arguments(arg: str, expected: BdatCommand) -> None:
    assert parse_bdat(arg) == expected


@pytest.mark.parametrize("arg", ["", "LAST", "-1", "+1", "1.0", "0x10", "1e3", "10 LAST x",
                                 "10 FIRST", "1000000000000000000", "١٢", "10LAST"])
def test_bad_bdat_arguments(arg: str) -> None:
    assert parse_bdat(arg) is None


# --- reading and splitting --------------------------------------------------------------
class Pieces:
    """A read() that returns the given pieces one per call (a network's segmentation)."""

    def __init__(self, *pieces: bytes):
        self.pieces = list(pieces)
        self.reads: list[int] = []

    async def read(self, n: int) -> bytes:
        self.reads.append(n)
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        assert len(piece) <= n, "test pieces must fit the request"
        return piece


class Lines:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, bool]] = []

    async def write_line(self, line: bytes) -> None:
        self.got.append((line, False))


async def split(chunks: list[bytes], *, limit: int = 100, forbid: bool = True
                ) -> tuple[list[tuple[bytes, bool]], bool]:
    feed_sink = Lines()
    feed = Feed(feed_sink)
    calls: list[tuple[bytes, bool]] = []
    original = feed.line

    async def line(data: bytes, *, continued: bool) -> None:
        calls.append((data, continued))
        await original(data, continued=continued)

    feed.line = line  # type: ignore[method-assign]
    splitter = LineSplitter(feed, limit=limit, forbid_bare_lf=forbid)
    for chunk in chunks:
        if not await splitter.write(chunk):
            return calls, False
    await splitter.close()
    return calls, True


async def test_crlf_split_across_chunks_is_one_line_end() -> None:
    calls, ok = await split([b"Subject: a\r", b"\nbody\r\nla", b"st"])
    assert ok
    assert calls == [(b"Subject: a", False), (b"body", False), (b"last", False)]


async def test_bare_cr_is_data_and_dot_lines_are_content() -> None:
    calls, ok = await split([b"a\rb\r\n.\r\n..x\r\nQUIT\r\n\r\n.\r\n"])
    assert ok
    assert [c[0] for c in calls] == [b"a\rb", b".", b"..x", b"QUIT", b"", b"."]


@pytest.mark.parametrize("chunks", [[b"a\nb\r\n"], [b"a\r\n\n"], [b"x", b"\n"]])
async def test_bare_lf_refused_when_forbidden(chunks: list[bytes]) -> None:
    _, ok = await split(chunks)
    assert not ok


async def test_bare_lf_is_a_line_end_when_allowed() -> None:
    calls, ok = await split([b"a\nb\r\n"], forbid=False)
    assert ok and [c[0] for c in calls] == [b"a", b"b"]


async def test_long_lines_come_in_pieces_and_a_final_cr_waits_for_its_lf() -> None:
    calls, ok = await split([b"abcdefg", b"hij\r", b"\nxyz"], limit=4)
    assert ok
    assert calls == [(b"abcd", False), (b"efgh", True), (b"ij", True), (b"xyz", False)]
    # The CR at a piece boundary is kept back: it was the CR of a CRLF.
    calls, _ = await split([b"abc\r", b"\n"], limit=3)
    assert calls == [(b"abc", False)]


async def test_chunk_reader_takes_buffered_octets_first_then_reads_only_the_chunk() -> None:
    source = Pieces(b"BDAT 5\r\nhel", b"lo", b"QUIT\r\n")
    reader = ChunkReader(source.read)
    assert await reader.next(100) == (b"BDAT 5", CRLF)
    feed = Feed(Lines())
    splitter = LineSplitter(feed, limit=100, forbid_bare_lf=True)
    assert await receive_chunk(reader, 5, splitter) == OK
    assert source.reads[-1] == 2  # asked the stream for the two missing octets only
    assert await reader.next(100) == (b"QUIT", CRLF)


async def test_receive_chunk_reports_eof_and_bare_lf() -> None:
    reader = ChunkReader(Pieces(b"abc").read)
    assert await receive_chunk(reader, 10, None) == EOF
    reader = ChunkReader(Pieces(b"a\nbc").read)
    feed = Feed(Lines())
    assert await receive_chunk(reader, 4, LineSplitter(feed, limit=10, forbid_bare_lf=True)
                               ) == BARE_LF


async def test_skipped_chunk_is_consumed_in_bounded_reads() -> None:
    big = b"x" * 300_000
    source = Pieces(*[big[i:i + 65536] for i in range(0, len(big), 65536)], b"NOOP\r\n")
    reader = ChunkReader(source.read)
    assert await receive_chunk(reader, len(big), None) == OK
    assert max(source.reads) <= 65536
    assert await reader.next(100) == (b"NOOP", CRLF)


# --- whole sessions ---------------------------------------------------------------------
class Sink:
    def __init__(self, tmp: Path):
        self.tmp, self.enqueued, self.opened = tmp, [], 0

    def new_queue_id(self) -> str:
        return f"Q{self.opened}"

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: object = None,
                   recipient: str = "") -> MessageWriter:
        self.opened += 1
        return await open_writer(CleanupSettings(myhostname="mx.test", hopcount_limit=3),
                                 self.tmp / queue_id, queue_id=queue_id, sender=sender,
                                 local_submission=False, first_headers=[])

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str:
        cleaned = await writer.finish()
        self.enqueued.append((envelope, cleaned.spool_path.read_bytes()))
        cleaned.spool_path.unlink()
        return queue_id


class Policy:
    def __init__(self, stage: str = "", verdict: Verdict | None = None):
        self.stage, self.verdict = stage, verdict
        self.seen: list[Facts] = []

    async def check(self, facts: Facts) -> Verdict | None:
        self.seen.append(facts)
        return self.verdict if facts.stage == self.stage else None


ENV = b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n"


async def run(tmp_path: Path, payload: bytes, *, policy: Policy | None = None,
              **settings: object) -> tuple[list[str], Sink, str]:
    stream, log = Stream(payload), io.StringIO()
    sink = sink_ = Sink(tmp_path)

    async def space_ok(size: int) -> bool:
        return True

    session = Session(SmtpdSettings(myhostname="mx.test", peername_lookup=False,
                                    error_sleep_time=0, **settings),  # type: ignore[arg-type]
                      stream, ClientInfo("192.0.2.7", 4000), sink=sink_,
                      restrictions=policy or Policy(), resolver=None,
                      log=MailLog(hostname="mx.test", stream=log), space_ok=space_ok)
    async with asyncio.timeout(5):
        await session.run()
    assert stream.closed
    lines = [line for line in stream.out.decode().split("\r\n") if line[3:4] == " "]
    return lines, sink, log.getvalue()


def chunk(data: bytes, last: bool = False) -> bytes:
    return f"BDAT {len(data)}{' LAST' if last else ''}\r\n".encode() + data


async def test_chunks_make_one_message_stored_with_lf(tmp_path: Path) -> None:
    payload = (ENV + chunk(b"Subject: t\r\n\r\nhel") + chunk(b"lo\r\nwor")
               + chunk(b"ld\r\n", last=True) + b"QUIT\r\n")
    lines, sink, log = await run(tmp_path, payload)
    assert lines[-4:] == ["250 2.0.0 Ok: 17 bytes", "250 2.0.0 Ok: 7 bytes",
                          "250 2.0.0 Ok: 28 bytes queued as Q0", "221 2.0.0 Bye"]
    [(envelope, content)] = sink.enqueued
    assert envelope.recipients[0].address == "b@mx.test"
    assert content.endswith(b"Subject: t\n\nhello\nworld\n")
    assert "ehlo=1 mail=1 rcpt=1 bdat=3 quit=1 commands=7" in log
    assert list(tmp_path.iterdir()) == []


async def test_bdat_0_last_ends_the_message(tmp_path: Path) -> None:
    payload = ENV + chunk(b"Subject: t\r\n\r\nx\r\n") + b"BDAT 0 LAST\r\nQUIT\r\n"
    lines, sink, _ = await run(tmp_path, payload)
    assert lines[-2] == "250 2.0.0 Ok: 17 bytes queued as Q0"
    assert sink.enqueued[0][1].endswith(b"Subject: t\n\nx\n")


async def test_commands_and_end_of_data_inside_a_chunk_are_content(tmp_path: Path) -> None:
    body = (b"Subject: t\r\n\r\none\r\n.\r\nMAIL FROM:<evil@c.test>\r\nRCPT TO:<x@mx.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\n.\r\nBDAT 5 LAST\r\n")
    lines, sink, _ = await run(tmp_path, ENV + chunk(body, last=True) + b"QUIT\r\n")
    assert len(sink.enqueued) == 1
    assert sink.enqueued[0][1].endswith(
        b"one\n.\nMAIL FROM:<evil@c.test>\nRCPT TO:<x@mx.test>\nDATA\nSubject: smuggled\n\n.\n"
        b"BDAT 5 LAST\n")
    assert lines[-2:] == [f"250 2.0.0 Ok: {len(body)} bytes queued as Q0", "221 2.0.0 Bye"]


@pytest.mark.parametrize(("payload", "expected"), [
    (b"EHLO c.test\r\nBDAT 3 LAST\r\nabcQUIT\r\n", "503 5.5.1 Error: need RCPT command"),
    (b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nBDAT 3 LAST\r\nabcQUIT\r\n",
     "554 5.5.1 Error: no valid recipients"),
    (ENV + chunk(b"x\r\n") + b"DATA\r\nQUIT\r\n", "503 5.5.1 Error: DATA command after BDAT"),
    (ENV + chunk(b"x\r\n") + b"RCPT TO:<c@mx.test>\r\nQUIT\r\n",
     "503 5.5.1 Error: RCPT command after BDAT"),
    (ENV + chunk(b"x\r\n", last=True) + b"BDAT 3 LAST\r\nabcQUIT\r\n",
     "503 5.5.1 Error: need RCPT command"),
])
async def test_sequencing_errors_consume_the_chunk(tmp_path: Path, payload: bytes,
                                                   expected: str) -> None:
    lines, _, _ = await run(tmp_path, payload)
    assert lines[-2:] == [expected, "221 2.0.0 Bye"]  # "abc" was not read as a command


async def test_bad_syntax_answers_501_and_closes(tmp_path: Path) -> None:
    lines, sink, log = await run(tmp_path, ENV + b"BDAT 3x LAST\r\nQUIT\r\n")
    assert lines[-1] == "501 5.5.4 Syntax: BDAT count [LAST]"
    assert "221" not in lines[-1] and sink.enqueued == []
    assert "malformed BDAT command syntax from unknown[192.0.2.7]: BDAT 3x LAST" in log
    assert "bdat=0/1" in log


async def test_size_limit_counts_all_chunks_and_fails_the_rest(tmp_path: Path) -> None:
    payload = (ENV + chunk(b"Subject: t\r\n\r\n" + b"a" * 30) + chunk(b"b" * 30)
               + chunk(b"c" * 5, last=True) + b"NOOP\r\nQUIT\r\n")
    lines, sink, log = await run(tmp_path, payload, message_size_limit=60)
    assert lines[-5:] == ["250 2.0.0 Ok: 44 bytes",
                          "552 5.3.4 Message size exceeds fixed limit",
                          "552 5.3.4 Message size exceeds fixed limit",
                          "250 2.0.0 Ok", "221 2.0.0 Bye"]
    assert sink.enqueued == [] and list(tmp_path.iterdir()) == []
    assert "reject: BDAT from unknown[192.0.2.7]: 552 5.3.4" in log
    assert "bdat=1/3" in log


class WaitingStream(Stream):
    """Blocks once the payload is used up, as a client waiting for replies does."""

    async def read(self, n: int) -> bytes:
        piece = await super().read(n)
        if not piece:
            await asyncio.Event().wait()
        return piece


async def test_rset_discards_the_partial_message(tmp_path: Path) -> None:
    payload = ENV + chunk(b"Subject: t\r\n\r\npart\r\n") + b"RSET\r\n"
    stream, log = WaitingStream(payload), io.StringIO()

    async def space_ok(size: int) -> bool:
        return True

    session = Session(SmtpdSettings(myhostname="mx.test", peername_lookup=False),
                      stream, ClientInfo("192.0.2.7", 4000), sink=Sink(tmp_path),
                      restrictions=Policy(), resolver=None,
                      log=MailLog(hostname="mx.test", stream=log), space_ok=space_ok)
    task = asyncio.create_task(session.run())
    for _ in range(100):  # until the session waits for more input after RSET
        await asyncio.sleep(0)
        if stream.out.endswith(b"250 2.0.0 Ok\r\n"):
            break
    assert stream.out.endswith(b"250 2.0.0 Ok: 20 bytes\r\n250 2.0.0 Ok\r\n")
    assert not task.done()
    assert list(tmp_path.iterdir()) == []  # the spool file went with RSET, not at the end
    assert session.state.tx is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_next_transaction_after_rset_works(tmp_path: Path) -> None:
    payload = (ENV + chunk(b"Subject: one\r\n\r\n") + b"RSET\r\nMAIL FROM:<a@c.test>\r\n"
               b"RCPT TO:<b@mx.test>\r\n" + chunk(b"Subject: two\r\n\r\n", last=True)
               + b"QUIT\r\n")
    lines, sink, _ = await run(tmp_path, payload)
    [(_, content)] = sink.enqueued
    assert content.endswith(b"Subject: two\n\n")
    assert lines[-2].startswith("250 2.0.0 Ok: 16 bytes queued as")
    assert list(tmp_path.iterdir()) == []


async def test_lost_connection_mid_chunk_removes_the_spool_file(tmp_path: Path) -> None:
    _, sink, log = await run(tmp_path, ENV + b"BDAT 100 LAST\r\nSubject: t\r\n")
    assert sink.enqueued == [] and list(tmp_path.iterdir()) == []
    assert "lost connection after BDAT from unknown[192.0.2.7]" in log


async def test_bare_lf_in_a_chunk_closes_with_521(tmp_path: Path) -> None:
    lines, sink, log = await run(tmp_path, ENV + chunk(b"a\nb\r\n", last=True) + b"QUIT\r\n")
    assert lines[-1] == "521 5.5.2 mx.test Error: bare <LF> received"
    assert sink.enqueued == [] and list(tmp_path.iterdir()) == []
    assert "bare <LF> received after BDAT" in log


async def test_bare_lf_normalised_when_allowed(tmp_path: Path) -> None:
    _, sink, _ = await run(tmp_path, ENV + chunk(b"Subject: t\n\na\r\n", last=True)
                           + b"QUIT\r\n", forbid_bare_newline=False)
    assert sink.enqueued[0][1].endswith(b"Subject: t\n\na\n")


async def test_data_stage_refusal_fails_every_chunk(tmp_path: Path) -> None:
    policy = Policy("data", Verdict("reject", 554, "5.7.1", "no data"))
    payload = ENV + chunk(b"x\r\n") + chunk(b"y\r\n", last=True) + b"QUIT\r\n"
    lines, sink, log = await run(tmp_path, payload, policy=policy)
    assert lines[-3:] == ["554 5.7.1 no data", "554 5.7.1 no data", "221 2.0.0 Bye"]
    assert sink.enqueued == [] and sink.opened == 0
    assert "reject: BDAT from unknown[192.0.2.7]: 554 5.7.1 no data" in log
    [data_facts] = [f for f in policy.seen if f.stage == "data"]
    assert data_facts.where == "DATA" and not data_facts.pipelined


async def test_end_of_data_refusal_and_cleanup_reject_answer_the_last_chunk(
        tmp_path: Path) -> None:
    policy = Policy("end_of_data", Verdict("reject", 550, "5.7.1", "not at the end"))
    lines, sink, _ = await run(tmp_path, ENV + chunk(b"x\r\n", last=True) + b"QUIT\r\n",
                               policy=policy)
    assert lines[-2] == "550 5.7.1 not at the end" and sink.enqueued == []
    hops = b"".join(b"Received: from h%d\r\n" % i for i in range(4))
    lines, sink, _ = await run(tmp_path, ENV + chunk(hops) + chunk(b"\r\nx\r\n", last=True)
                               + b"QUIT\r\n")
    assert lines[-3:] == [f"250 2.0.0 Ok: {len(hops)} bytes", "554 5.4.6 Too many hops",
                          "221 2.0.0 Bye"]
    assert list(tmp_path.iterdir()) == []


async def test_chunking_discarded_is_not_advertised_nor_accepted(tmp_path: Path) -> None:
    payload = ENV + b"BDAT 3 LAST\r\nabcQUIT\r\n"
    stream_lines, _, _ = await run(tmp_path, payload,
                                      discard_ehlo_keywords=frozenset({"CHUNKING"}))
    assert stream_lines[-2:] == ["502 5.5.1 Error: command not implemented", "221 2.0.0 Bye"]
    lines, _, _ = await run(tmp_path, b"EHLO c.test\r\nQUIT\r\n")
    assert lines[1] == "250 CHUNKING"
