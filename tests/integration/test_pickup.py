"""pickup end to end: maildrop files (written by the real sendmail command too) through a
real Cleanup into a real Queue."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore import maildrop
from mailcore.cleanup import Cleanup
from mailcore.config import Config, load_config
from mailcore.log import MailLog
from mailcore.pickup import Pickup
from mailcore.queue import Queue, queue_paths
from mailcore.sendmail import InputLimits, Submitter, parse_argv, submit
from mailcore.tables import TableSet

REPO = Path(__file__).resolve().parents[2]
WHO = Submitter(uid=4321, login="alice", gecos_name="Alice L")


def _config(tmp_path: Path) -> Config:
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\nmyhostname = mx.example.com\n"
        "maildrop_scan_interval = 0.05s\n")
    return load_config(tmp_path)


async def _run_pickup(config: Config, log_stream: io.StringIO):  # type: ignore[no-untyped-def]
    paths = queue_paths(config.get_path("queue_directory"))
    queue = await Queue.open(paths.root)
    log = MailLog(hostname="mx.example.com", stream=log_stream)
    cleanup = Cleanup(config, TableSet(), queue, log, paths.spool)
    return queue, Pickup(config, cleanup, log), paths


async def _content(queue: Queue, queue_id: str) -> bytes:
    return b"".join([chunk async for chunk in queue.read_content(queue_id)])


async def test_pickup_queues_with_headers_completed(tmp_path: Path) -> None:
    config = _config(tmp_path)
    paths = queue_paths(config.get_path("queue_directory"))
    paths.maildrop.mkdir(parents=True)
    message = b"To: Bob <bob@example.com>\nBcc: hidden@example.net\nSubject: hi\n\nbody\n"
    submit(parse_argv(["-t", "-F", "Alice Full"]), io.BytesIO(message),
           maildrop.MaildropWriter(paths.maildrop), InputLimits(), WHO, environ={})
    log_stream = io.StringIO()
    queue, pickup, _ = await _run_pickup(config, log_stream)
    try:
        assert await pickup.scan() == 1
        [msg] = [m async for m in queue.iter_messages()]
        content = await _content(queue, msg.queue_id)
    finally:
        await queue.close()
    assert msg.sender == "alice@mx.example.com"  # append_at_myorigin
    assert [r.address for r in msg.recipients] == ["bob@example.com", "hidden@example.net"]
    headers = content.split(b"\n\n")[0].decode()
    assert headers.startswith(
        f"Received: by mx.example.com (mailcore, from userid {os.getuid()})\n"
        f"\tid {msg.queue_id}; ")
    assert "Bcc" not in headers and "hidden" not in headers
    assert "Message-ID: <" in headers and f".{msg.queue_id}@mx.example.com>" in headers
    assert "\nDate: " in headers and "\nFrom: Alice Full <alice@mx.example.com>" in headers
    assert content.endswith(b"\n\nbody\n")
    assert maildrop.oldest(paths.maildrop, 10) == []
    log = log_stream.getvalue()
    assert f"pickup[{os.getpid()}]: {msg.queue_id}: uid={os.getuid()} from=<alice>" in log
    assert log.index("uid=") < log.index("message-id=") < log.index("nrcpt=2 (queue active)")


async def test_corrupt_file_is_set_aside_and_others_flow(tmp_path: Path) -> None:
    config = _config(tmp_path)
    paths = queue_paths(config.get_path("queue_directory"))
    paths.maildrop.mkdir(parents=True)
    for n in range(3):
        submit(parse_argv([f"r{n}@example.com"]), io.BytesIO(b"Subject: %d\n\nx\n" % n),
               maildrop.MaildropWriter(paths.maildrop), InputLimits(), WHO, environ={})
    victim = maildrop.oldest(paths.maildrop, 10)[1]
    with open(victim, "r+b") as f:
        f.seek(120)
        f.write(b"#")  # content damaged: caught by the checksum while streaming
    (paths.maildrop / "AAAAAAAAAAAA").write_bytes(b"garbage")  # damaged header
    log_stream = io.StringIO()
    queue, pickup, _ = await _run_pickup(config, log_stream)
    try:
        assert await pickup.scan() == 2
        queued = [m async for m in queue.iter_messages()]
        # nothing of the damaged message stays in the queue or the spool
        assert [p for p in paths.spool.iterdir()] == []
    finally:
        await queue.close()
    assert sorted(m.recipients[0].address for m in queued) == [
        "r0@example.com", "r2@example.com"]
    assert sorted(p.name for p in (paths.maildrop / "corrupt").iterdir()) == sorted(
        ["AAAAAAAAAAAA", victim.name])
    assert log_stream.getvalue().count("moved to maildrop/corrupt/") == 2


@pytest.mark.integration
async def test_sendmail_command_while_server_down_then_pickup(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MAILCORE_CONFIG_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "mailcore.cli_local", "-C", str(tmp_path), "-t", "-i",
         "-f", "sender@example.com"],
        input=b"To: dest@example.org\r\nSubject: cmd\r\n\r\nline\r\n.\r\nend\r\n",
        capture_output=True, cwd=REPO, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "mailcore.cli_local", "-C", str(tmp_path), "-bp"],
        capture_output=True, cwd=REPO, env=env, timeout=60, check=False)
    assert b"sender@example.com" in listing.stdout and b"1 Request." in listing.stdout
    queue, pickup, paths = await _run_pickup(config, io.StringIO())
    task = asyncio.create_task(pickup.run())
    try:
        for _ in range(200):
            if (await queue.counts())["incoming"]:
                break
            await asyncio.sleep(0.02)
        [msg] = [m async for m in queue.iter_messages()]
        content = await _content(queue, msg.queue_id)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await queue.close()
    assert msg.sender == "sender@example.com"
    assert content.endswith(b"\n\nline\n.\nend\n")
    assert maildrop.oldest(paths.maildrop, 10) == []
