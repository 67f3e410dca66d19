"""pflogsumm (Debian's package) reads mailcore's maillog like Postfix's: received, delivered,
deferred and bounced are counted correctly with --syslog-name=mailcore (issue 5, Logging)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time

import aiosmtplib
import pytest
from support.peer import Peer, Script
from support.smtpd import running_server

pytestmark = pytest.mark.integration


def pflogsumm() -> str:
    path = shutil.which("pflogsumm")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("pflogsumm is not installed (scripts/install-peers installs it)")
        pytest.skip("pflogsumm is not installed")
    return path


def counts(report: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for word in ("received", "delivered", "deferred", "bounced", "rejected"):
        match = re.search(rf"^\s*(\d+)\s+{word}\b", report, re.MULTILINE)
        found[word] = int(match.group(1)) if match else -1
    return found


async def test_pflogsumm_counts_mailcore_log(tmp_path):
    program = pflogsumm()
    maillog = tmp_path / "maillog"
    script = Script(rcpt={"gone@far.example": "550 5.1.1 no such user",
                          "later@far.example": "450 4.2.1 try again later"})
    async with Peer(script) as peer:
        settings = {"relayhost": f"[127.0.0.1]:{peer.port}", "notify_classes": "",
                    "maximal_queue_lifetime": "1d"}
        services = "smtp unix - - n - - smtp\nrelay unix - - n - - smtp\n"
        async with running_server(tmp_path, settings, services=services) as srv:
            for rcpt in ("one@far.example", "two@far.example", "gone@far.example",
                         "later@far.example"):
                await aiosmtplib.send("Subject: s\r\n\r\nx\r\n", sender="a@client.test",
                                      recipients=[rcpt], hostname=srv.host, port=srv.port,
                                      local_hostname="client.test")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                text = srv.log
                if text.count("status=sent") >= 3 and "status=bounced" in text and (
                        "status=deferred" in text):
                    break
                await asyncio.sleep(0.05)
    maillog.write_text(srv.log)
    result = subprocess.run([program, "--syslog-name=mailcore", str(maillog)],
                            capture_output=True, text=True, timeout=60, check=True)
    summary = counts(result.stdout)
    # Four messages in from SMTP; delivered: two of them plus the bounce notice, which the
    # relayhost takes back to the sender's domain.
    assert summary["received"] == 4, result.stdout
    assert summary["delivered"] == 3, result.stdout
    assert summary["deferred"] == 1, result.stdout
    assert summary["bounced"] == 1, result.stdout
