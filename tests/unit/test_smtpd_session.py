"""A whole Session over an in-memory stream with fake collaborators: internal errors,
queue failures, policy verdicts at each stage, and the disconnect counts."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from support.fakes import Stream

from mailcore.cleanup import CleanupSettings, MessageWriter, open_writer
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope
from mailcore.queue import QueueFullError, QueueWriteError
from mailcore.restrictions import Facts, Verdict
from mailcore.smtpd.session import Session
from mailcore.smtpd.settings import SmtpdSettings


class Sink:
    def __init__(self, tmp: Path, error: Exception | None = None):
        self.tmp, self.error, self.enqueued = tmp, error, []

    def new_queue_id(self) -> str:
        return f"Q{len(self.enqueued)}"

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: object = None,
                   recipient: str = "") -> MessageWriter:
        return await open_writer(CleanupSettings(myhostname="mx.test"), self.tmp / queue_id,
                                 queue_id=queue_id, sender=sender, local_submission=False,
                                 first_headers=first_headers)

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str:
        cleaned = await writer.finish()
        if self.error is not None:
            cleaned.spool_path.unlink()
            raise self.error
        self.enqueued.append((envelope, cleaned.spool_path.read_bytes()))
        return queue_id


class Policy:
    def __init__(self, stage: str = "", verdict: Verdict | None = None,
                 error: Exception | None = None):
        self.stage, self.verdict, self.error = stage, verdict, error

    async def check(self, facts: Facts) -> Verdict | None:
        if facts.stage == self.stage:
            if self.error is not None:
                raise self.error
            return self.verdict
        return None


MAIL = (b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n"
        b"DATA\r\nSubject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n")


async def run(tmp_path: Path, payload: bytes = MAIL, *, sink: Sink | None = None,
              policy: Policy | None = None) -> tuple[list[str], Sink, str]:
    stream, log = Stream(payload), io.StringIO()
    sink = sink or Sink(tmp_path)

    async def space_ok(size: int) -> bool:
        return size < 10_000

    session = Session(SmtpdSettings(myhostname="mx.test", peername_lookup=False,
                                    error_sleep_time=0),
                      stream, ClientInfo("192.0.2.7", 4000), sink=sink,
                      restrictions=policy or Policy(), resolver=None,
                      log=MailLog(hostname="mx.test", stream=log), space_ok=space_ok)
    async with asyncio.timeout(5):
        await session.run()
    assert stream.closed
    lines = [line for line in stream.out.decode().split("\r\n") if line[3:4] == " "]
    return lines, sink, log.getvalue()


async def test_message_goes_to_the_sink_and_250_follows(tmp_path: Path) -> None:
    lines, sink, log = await run(tmp_path)
    assert lines[-2:] == ["250 2.0.0 Ok: queued as Q0", "221 2.0.0 Bye"]
    [(envelope, content)] = sink.enqueued
    assert envelope.client.helo == "c.test" and envelope.client.protocol == "ESMTP"
    assert content.endswith(b"Subject: t\n\nhello\n")
    assert "disconnect from unknown[192.0.2.7] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5" in log


@pytest.mark.parametrize(("error", "expected"), [
    (QueueWriteError("disk on fire /var/x"), "451 4.3.0 Error: queue file write error"),
    (QueueFullError("SQLITE_FULL"), "452 4.3.1 Insufficient system storage"),
    (RuntimeError("secret internals"), "451 4.3.0 Error: queue file write error"),
])
async def test_queue_failures_answer_4xx_without_internals(tmp_path: Path, error: Exception,
                                                           expected: str) -> None:
    lines, _, log = await run(tmp_path, sink=Sink(tmp_path, error))
    assert lines[-2:] == [expected, "221 2.0.0 Bye"]
    assert "secret" not in "".join(lines)
    assert "data=0/1" in log
    assert list(tmp_path.iterdir()) == []


async def test_policy_crash_answers_451(tmp_path: Path) -> None:
    lines, sink, log = await run(tmp_path, policy=Policy("rcpt", error=KeyError("table gone")))
    assert "451 4.3.0 Error: internal error" in lines
    assert "table gone" not in "".join(lines) and "table gone" in log
    assert sink.enqueued == []


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data", "end_of_data"])
async def test_a_refusal_at_each_stage_is_the_reply(tmp_path: Path, stage: str) -> None:
    verdict = Verdict("reject", 554, "5.7.1", f"no at {stage}")
    lines, sink, log = await run(tmp_path, policy=Policy(stage, verdict))
    assert f"554 5.7.1 no at {stage}" in lines
    assert sink.enqueued == []
    assert f"reject: {stage.upper().replace('END_OF_DATA', 'END-OF-MESSAGE')} from" in log


async def test_connect_refusal_closes(tmp_path: Path) -> None:
    verdict = Verdict("reject", 554, "5.7.1", "go away")
    lines, _, _ = await run(tmp_path, policy=Policy("connect", verdict))
    assert lines == ["554 5.7.1 go away"]


async def test_queue_minfree_at_mail(tmp_path: Path) -> None:
    lines, _, log = await run(tmp_path, b"EHLO c\r\nMAIL FROM:<a@c.test> SIZE=20000\r\nQUIT\r\n")
    assert lines[2] == "452 4.3.1 Insufficient system storage"
    assert "NOQUEUE: reject: MAIL from unknown[192.0.2.7]: 452 4.3.1" in log


async def test_lost_connection_during_data_aborts(tmp_path: Path) -> None:
    _, sink, log = await run(tmp_path, MAIL.split(b"hello")[0] + b"hel")
    assert sink.enqueued == [] and list(tmp_path.iterdir()) == []
    assert "lost connection after DATA from unknown[192.0.2.7]" in log
