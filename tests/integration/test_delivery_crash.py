"""Restart is always safe (ARCHITECTURE decision 6; issue 5): SIGKILL `mailcore serve` while it
delivers, start it again, and every message reaches the next hop at least once — nothing is
lost or stranded; only deliveries in flight at the kill may arrive twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import aiosmtplib
import pytest
from support.peer import Peer, Script
from support.process import start_server, stop, wait_for_banner
from support.smtpd import free_port

pytestmark = pytest.mark.integration

MESSAGES = 60


def write_config(directory: Path, port: int, relay_port: int) -> None:
    (directory / "main.cf").write_text(
        "myhostname = mx.crash.test\n"
        "mynetworks = 127.0.0.0/8\n"
        "queue_directory = queue\n"
        "smtpd_peername_lookup = no\n"
        "maillog_file = maillog\n"
        "dns_nameservers = 127.0.0.1:9\n"
        f"relayhost = [127.0.0.1]:{relay_port}\n"
        # One delivery at a time keeps the run long enough to kill it midway.
        "default_destination_concurrency_limit = 1\n"
        "initial_destination_concurrency = 1\n"
        "minimal_backoff_time = 1s\n"
        "maximal_backoff_time = 2s\n"
        "queue_run_delay = 1s\n"
    )
    (directory / "master.cf").write_text(
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "smtp unix - - n - - smtp\nrelay unix - - n - - smtp\n")


def queued(db: Path) -> int:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        connection.close()


async def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sigkill_during_delivery_loses_nothing(tmp_path):
    port = free_port()
    async with Peer(Script()) as peer:
        write_config(tmp_path, port, peer.port)
        server = start_server(tmp_path)
        try:
            await asyncio.to_thread(wait_for_banner, port, server)
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port,
                                   local_hostname="client.test", timeout=10)
            async with smtp:
                for number in range(MESSAGES):
                    await smtp.sendmail("a@client.test", ["b@far.example"],
                                        f"Subject: m{number}\r\n\r\nx\r\n")
            await wait_until(lambda: len(peer.messages) >= MESSAGES // 4, 30,
                             "the first deliveries")
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=20)
        finally:
            stop(server, signal.SIGKILL)
        delivered_before = len(peer.messages)
        assert delivered_before < MESSAGES, "everything was delivered before the kill"
        restarted = start_server(tmp_path)
        try:
            await asyncio.to_thread(wait_for_banner, port, restarted)
            db = tmp_path / "queue" / "queue.db"
            await wait_until(lambda: queued(db) == 0, 60, "the queue to drain after restart")
        finally:
            stop(restarted)
        subjects = [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
                    for m in peer.messages]
    assert restarted.returncode == 0
    assert set(subjects) == {f"m{n}" for n in range(MESSAGES)}, "a message was lost"
    # At most the deliveries in flight at the kill arrive twice (concurrency 1: one).
    assert len(subjects) - MESSAGES <= 1
