"""The acceptance path's shortcuts give the same results as the long way round: messages kept
in memory instead of a spool file, the plain-body bypass of the MIME tracker, the Received
date, the maillog stamp, the queue's message insert and its batch without savepoints."""

import asyncio
import email.utils
import io
import os
import time
from pathlib import Path

import pytest

from mailcore.checks import ChecksSettings, ContentChecks
from mailcore.cleanup import CleanupSettings, MessageWriter, open_writer
from mailcore.cleanup.headers import rfc2822_date
from mailcore.log import MailLog
from mailcore.queue import NewMessage, NewRecipient, Queue, QueueWriteError
from mailcore.restrictions.addresses import valid_hostaddr
from mailcore.rewrite.forms import find_unquoted
from mailcore.tables import TableSet

FILE = CleanupSettings(myhostname="mx.example.test")
MEMORY = CleanupSettings(myhostname="mx.example.test", memory_limit=4096)

MULTIPART = (b"Subject: parts\nContent-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n"
             b"--b1\nContent-Type : text/plain\n\nfirst part\n--b1--\nepilogue\nmore")


async def stored(tmp_path: Path, name: str, settings: CleanupSettings, text: bytes,
                 checks: ContentChecks | None = None) -> tuple[bytes, bool]:
    """The stored message and whether it came back in memory."""
    writer: MessageWriter = await open_writer(
        settings, tmp_path / name, queue_id="ABC123DEF0", sender="a@example.test",
        local_submission=False, first_headers=[b"Received: by mx.example.test"],
        checks=checks)
    for line in text.split(b"\n"):
        await writer.write_line(line)
    done = await writer.finish()
    if done.content is not None:
        assert not done.spool_path.exists()
        assert done.size == len(done.content)
        return done.content, True
    data = done.spool_path.read_bytes()
    assert done.size == len(data)
    return data, False


@pytest.mark.parametrize("text", [b"Subject: s\n\nbody\nmore", MULTIPART,
                                  b"Subject: s\nnot a header\nbody"])
async def test_memory_and_file_store_the_same_bytes(tmp_path: Path, text: bytes) -> None:
    on_disk, in_memory = await stored(tmp_path, "f", FILE, text)
    kept, memory = await stored(tmp_path, "m", MEMORY, text)
    assert (in_memory, memory) == (False, True)
    assert kept == on_disk


async def test_part_headers_after_the_body_starts_are_still_tracked(tmp_path: Path) -> None:
    kept, _ = await stored(tmp_path, "m", MEMORY, MULTIPART)
    assert b"Content-Type: text/plain" in kept  # "Name :" normalised inside the multipart


async def test_a_message_over_the_memory_limit_goes_to_the_spool_file(tmp_path: Path) -> None:
    text = b"Subject: big\n\n" + b"\n".join(b"line %d " % i + b"x" * 70 for i in range(200))
    data, memory = await stored(tmp_path, "m", MEMORY, text)
    on_disk, _ = await stored(tmp_path, "f", FILE, text)
    assert not memory and data == on_disk and len(data) > MEMORY.memory_limit


async def test_an_aborted_memory_message_leaves_no_file(tmp_path: Path) -> None:
    writer = await open_writer(MEMORY, tmp_path / "m", queue_id="Q", sender="",
                               local_submission=False, first_headers=[])
    await writer.write_line(b"Subject: s")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


async def test_body_checks_still_see_every_body_line(tmp_path: Path) -> None:
    (tmp_path / "body_checks").write_text("/^secret/ REPLACE redacted\n")
    checks = ContentChecks(ChecksSettings(body_checks=(f"regexp:{tmp_path}/body_checks",)),
                           TableSet())
    data, _ = await stored(tmp_path, "m", MEMORY, b"Subject: s\n\nhello\nsecret 1\nsecret 2",
                           checks)
    assert data.split(b"\n")[-3:] == [b"redacted", b"redacted", b""]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata"])
def test_received_date_matches_formatdate(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    if not Path("/usr/share/zoneinfo", zone).exists():
        pytest.skip(f"no zoneinfo for {zone}")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for when in (0, 1e9, 1_700_000_000.5, 1_711_846_799.9999996, 1_711_846_800, -1e8):
            assert rfc2822_date(when) == email.utils.formatdate(when, localtime=True)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_maillog_stamp_follows_the_clock_across_seconds() -> None:
    now = [1_700_000_000.2]
    stream = io.StringIO()
    log = MailLog(hostname="mx", stream=stream, clock=lambda: now[0])
    for step in (0.0, 0.7, 0.2, 5.0, -10.0):
        now[0] += step
        log.info("smtpd", "tab\there")
    stamps = [line[:15] for line in stream.getvalue().splitlines()]
    expected = [time.strftime("%b %e %H:%M:%S", time.localtime(int(t))) for t in
                (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.1, 1_700_000_006.1,
                 1_699_999_996.1)]
    assert stamps == expected
    assert stream.getvalue().splitlines()[0].endswith(": tab?here")


@pytest.mark.parametrize("text", ["a@b@c", '"a@b"@c', "a\\@b@c", '"x"!y%z', "plain", ""])
def test_find_unquoted_with_and_without_quotes(text: str) -> None:
    for op in "@!%":
        for last in (True, False):
            slow = [i for i, ch in enumerate(text) if ch == op and _unquoted(text, i)]
            want = (slow[-1] if last else slow[0]) if slow else -1
            assert find_unquoted(text, op, last=last) == want


def _unquoted(text: str, index: int) -> bool:
    quoted = escaped = False
    for i, ch in enumerate(text):
        if i == index:
            return not (quoted or escaped)
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
    return False


@pytest.mark.parametrize(("text", "ok"), [("127.0.0.1", True), ("::1", True),
                                          ("fe80::1%eth0", True), ("localhost", False),
                                          ("1.2.3", False), ("x1.2.3.4", False), ("", False)])
def test_valid_hostaddr(text: str, ok: bool) -> None:
    assert valid_hostaddr(text) is ok


def _message(content: bytes, queue_id: str | None = None) -> NewMessage:
    return NewMessage(sender="a@example.com", recipients=(NewRecipient("b@example.net"),),
                      content_path=None, content=content, size=len(content),
                      arrival_time=1_700_000_000.0, queue_id=queue_id)


async def test_memory_content_round_trip_and_duplicate_id(tmp_path: Path) -> None:
    queue = await Queue.open(tmp_path / "q")
    try:
        big = os.urandom(600 * 1024)
        ids = await asyncio.gather(*(queue.enqueue(_message(c)) for c in (b"", b"small", big)))
        for queue_id, content in zip(ids, (b"", b"small", big), strict=True):
            assert b"".join([c async for c in queue.read_content(queue_id)]) == content
            got = await queue.get(queue_id)
            assert got is not None and got.content_size == len(content)
        taken = queue.new_queue_id()
        results = await asyncio.gather(queue.enqueue(_message(b"one", taken)),
                                       queue.enqueue(_message(b"two", taken)),
                                       queue.enqueue(_message(b"three")),
                                       return_exceptions=True)
        assert results[0] == taken and isinstance(results[2], str)
        assert isinstance(results[1], QueueWriteError) and "already in use" in str(results[1])
        assert b"".join([c async for c in queue.read_content(taken)]) == b"one"
    finally:
        await queue.close()
