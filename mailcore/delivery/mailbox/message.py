"""The queued message as a mailbox writer sees it (Postfix mail_copy).

Owns: MessageFile — the message copied once to an unlinked temporary file and read back with
pread, with the Delivered-To values of its primary headers — and CopyHeaders, the envelope
headers mail_copy prepends (From_ line, Return-Path, X-Original-To, Delivered-To), ``>From ``
quoting and the trailing blank line.

Must not: open, lock or create mailboxes (mbox.py, maildir.py); ``MessageFile.load`` is the
only coroutine, every other method blocks and runs in a delivery thread.

Invariants: every line written ends in LF (an unterminated last line gets one); reads use
pread, so several threads may copy one MessageFile at once. Parameters read: none.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailcore.address import quote_local
from mailcore.delivery import ContentSource
from mailcore.delivery.mailbox.files import write_all

MAILER_DAEMON = "MAILER-DAEMON"


@dataclass(frozen=True)
class CopyHeaders:
    """What mail_copy prepends: MAIL_COPY_MBOX for mailboxes, fewer for maildir/commands."""

    sender: str
    delivered_to: str | None = None
    orig_rcpt: str | None = None
    from_line: bool = True
    quote_from: bool = True
    blank_line: bool = True


def _quote_address(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{quote_local(local)}@{domain}" if at else quote_local(address)


class MessageFile:
    """The queued message copied once to an unlinked temporary file; read with pread, so
    several delivery threads can copy it at once."""

    def __init__(self, fd: int, size: int, delivered: frozenset[str]) -> None:
        self.fd = fd
        self.size = size
        self.delivered = delivered  # Delivered-To values in the primary headers, lower case

    @classmethod
    async def load(cls, source: ContentSource, queue_id: str,
                   directory: str | None = None) -> MessageFile:
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(None, _anonymous_file, directory)
        scanner = _DeliveredScanner()
        size = 0
        try:
            async for chunk in source(queue_id):
                scanner.feed(chunk)
                await loop.run_in_executor(None, write_all, fd, chunk)
                size += len(chunk)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, size, frozenset(scanner.values))

    def close(self) -> None:
        os.close(self.fd)

    def lines(self) -> Iterator[bytes]:
        """The message lines, each ending in LF (one is added to an unterminated last line)."""
        offset, partial = 0, b""
        while block := os.pread(self.fd, 65536, offset):
            offset += len(block)
            lines = (partial + block).split(b"\n")
            partial = lines.pop()
            for line in lines:
                yield line + b"\n"
        if partial:
            yield partial + b"\n"

    def copy(self, write: Callable[[bytes], object], headers: CopyHeaders, now: float) -> None:
        """Write the message in mailbox form (Postfix mail_copy)."""
        sender = _quote_address(headers.sender) if headers.sender else ""
        if headers.from_line:
            stamp = time.asctime(time.localtime(now))
            write(f"From {sender or MAILER_DAEMON}  {stamp}\n".encode())
        write(f"Return-Path: <{sender}>\n".encode())
        if headers.orig_rcpt:
            write(f"X-Original-To: {headers.orig_rcpt}\n".encode())
        if headers.delivered_to:
            write(f"Delivered-To: {_quote_address(headers.delivered_to).lower()}\n".encode())
        quote = headers.quote_from
        for line in self.lines():
            if quote and line.startswith(b"From "):
                write(b">")
            write(line)
        if headers.blank_line:
            write(b"\n")


class _DeliveredScanner:
    """Collects Delivered-To values from the primary header section of streamed content."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self._partial = b""
        self._in_headers = True

    def feed(self, chunk: bytes) -> None:
        if not self._in_headers:
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.strip():
                self._in_headers = False
                return
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == b"delivered-to":
                self.values.add(value.decode("utf-8", "replace").strip().lower())


def _anonymous_file(directory: str | None) -> int:
    with tempfile.TemporaryFile(dir=directory) as handle:
        return os.dup(handle.fileno())
