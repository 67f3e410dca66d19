"""mbox and Maildir writers (Postfix mail_copy, mbox_open, safe_open, maildir delivery)."""

from __future__ import annotations

import asyncio
import fcntl
import mailbox
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.delivery.mailbox import (
    CopyHeaders,
    LockSettings,
    MailboxError,
    MessageFile,
    deliver_maildir,
    deliver_mbox,
)

MSG = b"Subject: hi\nDelivered-To: Old@Example.COM\n\nFrom the start\n>From kept\nbody\n"
FAST = LockSettings(kinds=("fcntl", "dotlock"), attempts=3, delay=0.05, stale_time=500)


def source(data: bytes):  # type: ignore[no-untyped-def]
    async def read(queue_id: str) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):  # odd chunking: lines cross chunk borders
            yield data[i:i + 7]
    return read


def read_mbox(path: Path) -> list[mailbox.mboxMessage]:
    box = mailbox.mbox(str(path))
    try:
        return list(box)
    finally:
        box.close()


async def load(data: bytes = MSG) -> MessageFile:
    return await MessageFile.load(source(data), "Q1")


HEADERS = CopyHeaders(sender="alice@example.org", delivered_to="Bob@Example.NET",
                      orig_rcpt="bob@example.net")


async def test_mbox_format_and_read_back(tmp_path: Path) -> None:
    message = await load()
    assert message.delivered == frozenset({"old@example.com"})
    path = tmp_path / "bob"
    for _ in range(2):
        deliver_mbox(str(path), message, HEADERS, locks=FAST, size_limit=0, now=time.time())
    text = path.read_bytes()
    assert text.startswith(b"From alice@example.org  ")
    assert b"\nReturn-Path: <alice@example.org>\nX-Original-To: bob@example.net\n" \
           b"Delivered-To: bob@example.net\n" in text
    assert b"\n>From the start\n>From kept\n" in text  # Postfix quotes only "From "
    box = read_mbox(path)
    assert len(box) == 2
    assert box[1]["Subject"] == "hi"
    assert box[1].get_payload().startswith(">From the start\n>From kept\n")  # mboxo
    assert not (tmp_path / "bob.lock").exists()


async def test_null_sender_from_line(tmp_path: Path) -> None:
    message = await load()
    deliver_mbox(str(tmp_path / "m"), message, CopyHeaders(sender=""), locks=FAST,
                 size_limit=0, now=0)
    first = (tmp_path / "m").read_bytes().split(b"\n")[:2]
    assert first[0].startswith(b"From MAILER-DAEMON  ")
    assert first[1] == b"Return-Path: <>"


async def test_symlink_and_hard_link_refused(tmp_path: Path) -> None:
    message = await load()
    target = tmp_path / "passwd"
    target.write_bytes(b"root:x:0:0\n")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(MailboxError, match="symbolic link") as info:
        deliver_mbox(str(tmp_path / "link"), message, HEADERS, locks=FAST, size_limit=0,
                     now=0)
    assert info.value.dsn == "5.2.0"
    os.link(target, tmp_path / "hard")
    with pytest.raises(MailboxError, match="2 hard links"):
        deliver_mbox(str(tmp_path / "hard"), message, HEADERS, locks=FAST, size_limit=0,
                     now=0)
    assert target.read_bytes() == b"root:x:0:0\n"


async def test_size_limit_truncates_back(tmp_path: Path) -> None:
    message = await load(b"Subject: x\n\n" + b"y" * 5000 + b"\n")
    path = tmp_path / "box"
    deliver_mbox(str(path), message, HEADERS, locks=FAST, size_limit=8000, now=0)
    size = path.stat().st_size
    with pytest.raises(MailboxError) as info:
        deliver_mbox(str(path), message, HEADERS, locks=FAST, size_limit=8000, now=0)
    assert info.value.dsn == "5.2.2"
    assert "File too large" in info.value.text
    assert path.stat().st_size == size
    assert len(read_mbox(path)) == 1


async def test_other_process_holding_lock_defers_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "box"
    path.write_bytes(b"")
    message = await load()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,sys,time\n"
         f"f=open({str(path)!r},'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\n"
         "print('locked',flush=True)\nsys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(MailboxError) as info:
            deliver_mbox(str(path), message, HEADERS, locks=FAST, size_limit=0, now=0)
        assert info.value.dsn.startswith("4.")
        assert path.read_bytes() == b""
        # the holder lets go while we wait: the delivery then goes through
        waiting = LockSettings(kinds=("fcntl",), attempts=50, delay=0.05)
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(None, lambda: deliver_mbox(
            str(path), message, HEADERS, locks=waiting, size_limit=0, now=0))
        await asyncio.sleep(0.2)
        assert not task.done()
        holder.stdin.write("\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        await task
    finally:
        holder.kill()
        holder.communicate()
    assert len(read_mbox(path)) == 1


async def test_reader_holding_python_mailbox_lock(tmp_path: Path) -> None:
    path = tmp_path / "box"
    message = await load()
    deliver_mbox(str(path), message, HEADERS, locks=FAST, size_limit=0, now=0)
    reader = mailbox.mbox(str(path))
    reader.lock()  # fcntl lockf + dotlock, as a mail reader takes them
    loop = asyncio.get_running_loop()
    locks = LockSettings(kinds=("fcntl", "dotlock"), attempts=100, delay=0.02)
    task = loop.run_in_executor(None, lambda: deliver_mbox(
        str(path), message, HEADERS, locks=locks, size_limit=0, now=0))
    await asyncio.sleep(0.2)
    assert len(reader) == 1 and not task.done()
    reader.unlock()
    reader.close()
    await task
    assert len(read_mbox(path)) == 2


async def test_twenty_parallel_deliveries_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "box"
    loop = asyncio.get_running_loop()
    messages = [await load(f"Subject: n{i}\n\n".encode() + f"line {i}\n".encode() * 300)
                for i in range(20)]
    locks = LockSettings(kinds=("fcntl",), attempts=400, delay=0.01)
    await asyncio.gather(*(loop.run_in_executor(None, lambda m=m: deliver_mbox(
        str(path), m, HEADERS, locks=locks, size_limit=0, now=0)) for m in messages))
    box = read_mbox(path)
    assert len(box) == 20
    for msg in box:
        n = msg["Subject"][1:]
        assert msg.get_payload().rstrip("\n") == (f"line {n}\n" * 300).rstrip("\n")
    assert sorted(m["Subject"] for m in box) == sorted(f"n{i}" for i in range(20))


async def test_maildir_delivery(tmp_path: Path) -> None:
    message = await load()
    base = tmp_path / "Maildir"
    maildir_headers = CopyHeaders(sender="a@b", delivered_to="bob@example.net",
                                  from_line=False, quote_from=False, blank_line=False)
    for _ in range(3):
        deliver_maildir(str(base) + "/", message, maildir_headers, size_limit=0,
                        hostname="mx/a:b", now=time.time())
    box = mailbox.Maildir(str(base), create=False)
    assert len(box) == 3
    assert not os.listdir(base / "tmp")
    names = os.listdir(base / "new")
    assert all(n.endswith(".mx\\057a\\072b") for n in names)
    one = next(iter(box))
    assert one["Delivered-To"] == "bob@example.net"
    assert one.get_payload().startswith("From the start")  # no quoting in Maildir


async def test_maildir_symlink_refused(tmp_path: Path) -> None:
    message = await load()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "Maildir").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MailboxError, match="symbolic link"):
        deliver_maildir(str(tmp_path / "Maildir") + "/", message, CopyHeaders(sender=""),
                        size_limit=0, hostname="h", now=0)
    assert not os.listdir(tmp_path / "elsewhere")


async def test_maildir_size_limit(tmp_path: Path) -> None:
    message = await load(b"Subject: x\n\n" + b"z" * 3000 + b"\n")
    with pytest.raises(MailboxError) as info:
        deliver_maildir(str(tmp_path / "M/"), message, CopyHeaders(sender=""),
                        size_limit=1000, hostname="h", now=0)
    assert info.value.dsn == "5.2.2"
    assert not os.listdir(tmp_path / "M" / "tmp") and not os.listdir(tmp_path / "M" / "new")


def test_fcntl_module_has_ofd_locks() -> None:
    assert hasattr(fcntl, "F_OFD_SETLK")
