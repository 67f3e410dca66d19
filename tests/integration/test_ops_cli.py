"""The administrator's commands against a real server process: ``mailcore serve`` in the
background, then ``mailcore status``, ``reload`` (refused, then accepted), SIGHUP, ``flush``
and ``stop``; ``status`` again once it has exited. Every process is stopped by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from support.smtpd import free_port

pytestmark = pytest.mark.integration

MAIN_CF = """myhostname = mx.ops.test
mydestination = $myhostname
mynetworks = 127.0.0.0/8
queue_directory = queue
maillog_file = maillog
smtpd_peername_lookup = no
local_recipient_maps =
dns_nameservers = 127.0.0.1:9
shutdown_grace_time = 2s
"""


def mailcore(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailcore.cli", "-c", str(directory), *args],
                          capture_output=True, text=True, timeout=30, check=False)


def banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(200)


def wait_until(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def answers(port: int) -> bool:
    with suppress(OSError):
        return banner(port).startswith(b"220")
    return False


@contextmanager
def server(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    (directory / "main.cf").write_text(MAIN_CF)
    (directory / "master.cf").write_text(f"127.0.0.1:{port} inet n - n - - smtpd\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailcore.cli", "-c", str(directory), "serve", "--no-uvloop"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: process.poll() is not None or answers(port))
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]


def test_status_reload_and_stop(tmp_path):
    port = free_port()
    with server(tmp_path, port) as process:
        status = mailcore(tmp_path, "status")
        assert status.returncode == 0, status.stderr
        assert f"the mail system is running: PID: {process.pid}" in status.stdout
        assert f"listening: 127.0.0.1:{port}" in status.stdout
        assert "queue: incoming 0, active 0, deferred 0, hold 0, corrupt 0" in status.stdout

        # An invalid main.cf: refused with its error, the server keeps answering.
        (tmp_path / "main.cf").write_text(MAIN_CF + "smtpd_timeout = forever\n")
        refused = mailcore(tmp_path, "reload")
        assert refused.returncode == 1
        assert "smtpd_timeout" in refused.stderr and "main.cf, line 10" in refused.stderr
        # A table the server cannot open: the server refuses it and says why.
        (tmp_path / "main.cf").write_text(MAIN_CF + "transport_maps = texthash:/nonexistent/x\n")
        refused = mailcore(tmp_path, "reload")
        assert refused.returncode == 1 and "/nonexistent/x" in refused.stderr
        assert "running one is kept" in refused.stderr
        assert banner(port).startswith(b"220 mx.ops.test ESMTP")

        (tmp_path / "main.cf").write_text(MAIN_CF + "smtpd_banner = $myhostname ESMTP v2\n")
        reloaded = mailcore(tmp_path, "reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert b"ESMTP v2" in banner(port)

        assert mailcore(tmp_path, "flush").returncode == 0
        flushed = mailcore(tmp_path, "flush", "-i", "NOSUCHID")
        assert flushed.returncode == 1 and "not in the deferred queue" in flushed.stderr

        stopped = mailcore(tmp_path, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert process.wait(timeout=10) == 0
    maillog = (tmp_path / "maillog").read_text()
    assert "reload refused, the running configuration is kept" in maillog
    assert f"mailcore/master[{process.pid}]: reload -- version" in maillog
    assert "terminating on signal or request" in maillog
    assert not (tmp_path / "queue" / "control").exists()

    after = mailcore(tmp_path, "status")
    assert after.returncode == 1
    assert "not running" in after.stderr
    assert "queue: incoming 0, active 0, deferred 0, hold 0, corrupt 0" in after.stdout
    assert mailcore(tmp_path, "stop").returncode == 1
    assert mailcore(tmp_path, "reload").returncode == 1
    down = mailcore(tmp_path, "flush")
    assert down.returncode == 1 and "the mail system is down" in down.stderr


def test_sighup_reloads_and_sigterm_stops(tmp_path):
    port, second = free_port(), free_port()
    with server(tmp_path, port) as process:
        (tmp_path / "main.cf").write_text(MAIN_CF + "smtpd_banner = $myhostname ESMTP hup\n")
        (tmp_path / "master.cf").write_text(f"127.0.0.1:{port} inet n - n - - smtpd\n"
                                            f"127.0.0.1:{second} inet n - n - - smtpd\n")
        os.kill(process.pid, signal.SIGHUP)
        wait_until(lambda: answers(second))
        assert b"ESMTP hup" in banner(port) and b"ESMTP hup" in banner(second)
        # A broken configuration sent by SIGHUP is refused the same way.
        (tmp_path / "main.cf").write_text(MAIN_CF + "smtpd_recipient_restrictions = bogus\n")
        os.kill(process.pid, signal.SIGHUP)
        log = tmp_path / "maillog"
        wait_until(lambda: "reload refused" in log.read_text())
        assert b"ESMTP hup" in banner(second)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert "unknown restriction: bogus" in log.read_text()
