"""`mailcore serve` as a real process for tests that kill or signal it: start, wait for its
banner, stop (every process a test starts is stopped by the test)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path


def start_server(directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailcore.cli", "-c", str(directory), "serve"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for_banner(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"server exited: {stderr[-2000:]}")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if s.recv(100).startswith(b"220"):
                return
        time.sleep(0.05)
    raise AssertionError("server did not answer in time")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stderr:
        process.stderr.close()
