"""cleanup's message writer: header completion, limits and the Received header
(Postfix cleanup(8): "adds missing Message-Id, Date, From"; hopcount_limit; header_size_limit)."""

import io
from pathlib import Path

import pytest

from mailcore.checks import ChecksSettings, ContentChecks
from mailcore.cleanup import (
    CleanupReject,
    CleanupSettings,
    MessageWriter,
    open_writer,
    received_header,
)
from mailcore.log import MailLog, format_delay
from mailcore.model import ClientInfo
from mailcore.tables import TableSet

SETTINGS = CleanupSettings(myhostname="mx.example.test", mail_name="mailcore",
                           header_size_limit=64, hopcount_limit=3, message_size_limit=2000)


async def writer(tmp_path: Path, *, local: bool, settings: CleanupSettings = SETTINGS,
                 full_name: str = "", **kwargs) -> MessageWriter:
    return await open_writer(
        settings, tmp_path / "msg.tmp", queue_id="ABC123DEF0", sender="alice@example.test",
        local_submission=local, full_name=full_name,
        first_headers=[b"Received: by mx.example.test", b"\tid ABC123DEF0"], **kwargs)


async def feed(w: MessageWriter, text: bytes) -> list[bytes]:
    for line in text.split(b"\n"):
        await w.write_line(line)
    done = await w.finish()
    return done.spool_path.read_bytes().split(b"\n")


def header_names(lines: list[bytes]) -> list[str]:
    names = []
    for line in lines:
        if not line:
            break
        if line[:1] not in (b" ", b"\t"):
            names.append(line.split(b":", 1)[0].decode())
    return names


async def test_local_submission_gets_missing_headers_and_loses_bcc(tmp_path):
    lines = await feed(await writer(tmp_path, local=True, full_name="Alice Example"),
                 b"To: bob@example.test\nBcc: secret@example.test\nSubject: hi\n\nbody")
    assert header_names(lines) == ["Received", "To", "Subject", "Message-ID", "Date", "From"]
    assert b"From: Alice Example <alice@example.test>" in lines
    message_id = next(line for line in lines if line.startswith(b"Message-ID:"))
    assert message_id.endswith(b".ABC123DEF0@mx.example.test>")
    assert lines[-2:] == [b"body", b""]


async def test_resent_headers_are_completed_with_resent_forms(tmp_path):
    lines = await feed(await writer(tmp_path, local=True),
                 b"From: a@x\nDate: then\nMessage-ID: <1@x>\nResent-To: c@x\n\nbody")
    assert header_names(lines)[-3:] == ["Resent-Message-ID", "Resent-Date", "Resent-From"]


async def test_remote_mail_is_not_completed_and_keeps_bcc(tmp_path):
    lines = await feed(await writer(tmp_path, local=False), b"Bcc: x@y\nSubject: s\n\nbody")
    assert header_names(lines) == ["Received", "Bcc", "Subject"]


async def test_always_add_missing_headers_completes_remote_mail(tmp_path):
    settings = CleanupSettings(**{**SETTINGS.__dict__, "always_add_missing_headers": True})
    w = await writer(tmp_path, local=False, settings=settings)
    lines = await feed(w, b"Subject: s\n\nbody")
    assert header_names(lines) == ["Received", "Subject", "Message-ID", "Date", "From"]


async def test_too_many_received_headers_is_554_546(tmp_path):
    w = await writer(tmp_path, local=False)
    with pytest.raises(CleanupReject) as info:
        await feed(w, b"Received: a\nReceived: b\n\nbody")
    assert (info.value.code, info.value.dsn) == (554, "5.4.6")
    assert not (tmp_path / "msg.tmp").exists()


async def test_message_size_limit_while_receiving(tmp_path):
    w = await writer(tmp_path, local=False)
    await w.write_line(b"Subject: big")
    await w.write_line(b"")
    for _ in range(100):
        await w.write_line(b"x" * 50)
    assert w.too_big
    with pytest.raises(CleanupReject) as info:
        await w.finish()
    assert (info.value.code, info.value.dsn) == (552, "5.3.4")
    assert not (tmp_path / "msg.tmp").exists()


async def test_overlong_header_is_truncated_to_header_size_limit(tmp_path):
    lines = await feed(await writer(tmp_path, local=False),
                 b"Subject: " + b"y" * 100 + b"\n continued\n\nbody")
    subject = next(line for line in lines if line.startswith(b"Subject:"))
    assert len(subject) == 64
    assert b" continued" not in lines


async def test_non_header_line_starts_the_body(tmp_path):
    lines = await feed(await writer(tmp_path, local=False), b"Subject: s\nthis is body text\nmore")
    assert lines[2:] == [b"Subject: s", b"", b"this is body text", b"more", b""]


def test_received_header_remote_single_recipient():
    client = ClientInfo(address="192.0.2.1", name="unknown", helo="client.test",
                        protocol="ESMTP")
    lines = received_header(client=client, myhostname="mx.example.test", mail_name="mailcore",
                            queue_id="ABC123DEF0", recipients=["bob@example.test"], when=0)
    assert lines[0] == b"Received: from client.test (unknown [192.0.2.1])"
    assert lines[1] == b"\tby mx.example.test (mailcore) with ESMTP id ABC123DEF0"
    assert lines[2].startswith(b"\tfor <bob@example.test>; ")


def test_received_header_local():
    lines = received_header(client=ClientInfo(address=""), myhostname="mx.example.test",
                            mail_name="mailcore", queue_id="Q1", recipients=["a", "b"],
                            local_uid=1000, when=0)
    assert lines[0] == b"Received: by mx.example.test (mailcore, from userid 1000)"
    assert lines[1].startswith(b"\tid Q1; ")


def test_maillog_line_format_and_sanitising():
    stream = io.StringIO()
    log = MailLog(hostname="mx.example.test", stream=stream, clock=lambda: 0)
    log.info("smtpd", "connect from unknown[127.0.0.1]\r\nforged: line")
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert " mx mailcore/smtpd[" in line
    assert line.endswith("]: connect from unknown[127.0.0.1]??forged: line\n")


@pytest.mark.parametrize(("seconds", "text"), [(0.004, "0"), (0.05, "0.05"), (0.5, "0.5"),
                                               (1.23, "1.2"), (35.4, "35")])
def test_delay_format(seconds, text):
    assert format_delay(seconds) == text


async def test_header_checks_run_on_whole_headers_and_reject_at_the_end(tmp_path):
    (tmp_path / "header_checks").write_text(
        "/^Subject:.*viagra/ REJECT no spam here\n/^X-Strip:/ IGNORE\n")
    checks = ContentChecks(ChecksSettings(header_checks=(f"regexp:{tmp_path}/header_checks",)),
                           TableSet())
    w = await writer(tmp_path, local=False, checks=checks)
    lines = await feed(w, b"X-Strip: gone\nSubject: hi\n\nbody")
    assert b"X-Strip: gone" not in lines and b"Subject: hi" in lines
    (tmp_path / "msg.tmp").unlink()
    w = await writer(tmp_path, local=False, checks=checks)
    with pytest.raises(CleanupReject) as info:
        await feed(w, b"Subject: cheap\n\tviagra\n\nbody")
    assert (info.value.code, info.value.dsn, info.value.text) == (550, "5.7.1", "no spam here")
    assert not (tmp_path / "msg.tmp").exists()
    assert any("reject: header Subject: cheap" in line for line in w.logs)


async def test_primary_header_addresses_go_through_the_rewriter(tmp_path):
    seen = []

    async def rewrite(name: str, value: str) -> str:
        seen.append(name)
        return value.replace("bob@old.example", "bob@new.example")

    lines = await feed(await writer(tmp_path, local=False, rewrite_header=rewrite),
                       b"To: Bob <bob@old.example>\nSubject: bob@old.example\n\nbob@old.example")
    assert b"To: Bob <bob@new.example>" in lines
    assert b"Subject: bob@old.example" in lines and b"bob@old.example" in lines
    assert seen == ["to"]
