"""`sendmail -bs`: an SMTP session on stdin/stdout that writes the maildrop, with the server
down (Postfix runs smtpd stand-alone for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run_bs(confdir: Path, script: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailcore.cli", "-c", str(confdir), "sendmail", "-bs"],
        input=script, capture_output=True, timeout=60, check=False,
    )


def test_bs_session_writes_the_maildrop(tmp_path):
    (tmp_path / "main.cf").write_text(
        "myhostname = mx.example.test\nqueue_directory = q\nmynetworks = 127.0.0.0/8\n"
        "maillog_file = maillog\n")
    result = run_bs(tmp_path, (
        b"EHLO me.test\r\nMAIL FROM:<a@x.test>\r\n"
        b'RCPT TO:<"|sh -c id"@example.org>\r\nRCPT TO:<b@example.org>\r\n'
        b"DATA\r\nSubject: bs\r\n\r\nhello\r\n.\r\nQUIT\r\n"))
    assert result.returncode == 0, result.stderr
    replies = result.stdout.decode().splitlines()
    assert replies[0] == "220 mx.example.test ESMTP mailcore"
    assert "501 5.1.3 Bad recipient address syntax" in replies
    queued = [line for line in replies if line.startswith("250 2.0.0 Ok: queued as ")]
    assert len(queued) == 1
    queue_id = queued[0].rsplit(" ", 1)[1]
    assert [p.name for p in (tmp_path / "q" / "maildrop").iterdir() if p.is_file()] == [queue_id]
    listing = subprocess.run(
        [sys.executable, "-m", "mailcore.cli", "-c", str(tmp_path), "queue", "list"],
        capture_output=True, timeout=60, check=True).stdout.decode()
    assert queue_id in listing and "b@example.org" in listing
    assert "connect from localhost[127.0.0.1]" in (tmp_path / "maillog").read_text()
