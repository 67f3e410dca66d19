"""Durability before 250 (ARCHITECTURE decision 1): SIGKILL the server under load, restart it,
and every message that got "250 … queued as ID" is in the queue exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import aiosmtplib
import pytest
from support.process import start_server, stop, wait_for_banner
from support.smtpd import free_port

pytestmark = pytest.mark.integration

CLIENTS = 12
LOAD_SECONDS = 2.0


def write_config(directory: Path, port: int) -> None:
    (directory / "main.cf").write_text(
        "myhostname = mx.crash.test\n"
        "mydestination = $myhostname, crash.test\n"
        "mynetworks = 127.0.0.0/8\n"
        "queue_directory = queue\n"
        "smtpd_peername_lookup = no\n"
        "maillog_file = maillog\n"
        "local_recipient_maps =\n"
    )
    (directory / "master.cf").write_text(f"127.0.0.1:{port} inet n - n - - smtpd\n")


async def client_loop(port: int, number: int, acked: dict[str, str],
                      stop_at: float) -> None:
    sequence = 0
    while time.monotonic() < stop_at:
        try:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port,
                                   local_hostname="client.test", timeout=5)
            await smtp.connect()
            while time.monotonic() < stop_at:
                token = f"c{number}-m{sequence}"
                sequence += 1
                message = (f"From: a@client.test\r\nTo: u@crash.test\r\nSubject: {token}\r\n"
                           f"\r\nbody {token}\r\n")
                _, reply = await smtp.sendmail("a@client.test", ["u@crash.test"], message)
                queue_id = reply.rsplit(" ", 1)[-1]
                acked[queue_id] = token
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            return  # the server was killed under us: stop this client


async def load_then_kill(port: int, seconds: float,
                         server: subprocess.Popen[bytes]) -> dict[str, str]:
    """Clients send until the server dies; the server is SIGKILLed after ``seconds``."""
    acked: dict[str, str] = {}
    stop_at = time.monotonic() + seconds + 5

    async def kill_later() -> None:
        await asyncio.sleep(seconds)
        os.kill(server.pid, signal.SIGKILL)

    await asyncio.gather(*(client_loop(port, n, acked, stop_at) for n in range(CLIENTS)),
                         kill_later())
    return acked


def queued_tokens(db: Path) -> dict[str, list[str]]:
    """queue ID -> Subject tokens found in its stored content."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT queue_id, data FROM content ORDER BY queue_id, seq").fetchall()
    finally:
        connection.close()
    contents: dict[str, bytes] = {}
    for queue_id, data in rows:
        contents[queue_id] = contents.get(queue_id, b"") + bytes(data)
    found: dict[str, list[str]] = {}
    for queue_id, data in contents.items():
        for line in data.split(b"\n"):
            if line.startswith(b"Subject: "):
                found.setdefault(queue_id, []).append(line[9:].decode())
    return found


def test_sigkill_under_load_loses_no_acknowledged_message(tmp_path):
    port = free_port()
    write_config(tmp_path, port)
    server = start_server(tmp_path)
    try:
        wait_for_banner(port, server)
        acked = asyncio.run(load_then_kill(port, LOAD_SECONDS, server))
        server.wait(timeout=20)
        assert server.returncode == -signal.SIGKILL
        assert len(acked) > 20, "the load produced too few messages to mean anything"
    finally:
        stop(server, signal.SIGKILL)
    restarted = start_server(tmp_path)
    try:
        wait_for_banner(port, restarted)
    finally:
        stop(restarted)
    assert restarted.returncode == 0
    tokens = queued_tokens(tmp_path / "queue" / "queue.db")
    for queue_id, token in acked.items():
        assert tokens.get(queue_id) == [token], f"{queue_id} ({token}) missing or changed"
    all_tokens = [t for ts in tokens.values() for t in ts]
    assert len(all_tokens) == len(set(all_tokens)), "a message was stored twice"
