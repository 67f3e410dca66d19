"""The failure type and the low-level file writes shared by the mbox and Maildir writers.

Owns: MailboxError (a failed delivery to one mailbox with its DSN status), the errno → DSN
mapping of Postfix mbox_dsn, writing a whole buffer to a descriptor, the buffered writer that
enforces a mailbox size limit, and unlinking a file without caring whether it is there.

Must not: open, lock or name mailboxes (mbox.py, maildir.py, lock.py); run in the event
loop — every function here blocks.

Invariants: a size-limited writer raises OSError(EFBIG) as soon as the limit is passed, the
way RLIMIT_FSIZE would, before the excess reaches the descriptor. Parameters read: none.
"""

from __future__ import annotations

import contextlib
import errno
import os


class MailboxError(Exception):
    """A delivery to one mailbox failed; ``dsn`` says whether it is temporary."""

    def __init__(self, dsn: str, text: str):
        super().__init__(text)
        self.dsn, self.text = dsn, text


def mbox_dsn(err: int, default: str) -> str:
    """Postfix mbox_dsn: full mailbox is permanent, a full disk or a busy file is not."""
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    return default


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LimitedWriter:
    """Buffers writes to a descriptor; past ``limit`` bytes behaves like RLIMIT_FSIZE (EFBIG)."""

    def __init__(self, fd: int, limit: int) -> None:
        self._fd, self._limit, self.written = fd, limit, 0
        self._buffer: list[bytes] = []
        self._buffered = 0

    def __call__(self, data: bytes) -> None:
        self.written += len(data)
        if self._limit and self.written > self._limit:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= 65536:
            self.flush()

    def flush(self) -> None:
        write_all(self._fd, b"".join(self._buffer))
        self._buffer, self._buffered = [], 0


def remove_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
