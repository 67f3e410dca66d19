"""Appending to an mbox file (Postfix mbox_open, safe_open and the local/virtual mailbox
append).

Owns: deliver_mbox — open the mailbox safely (create it 0600 when absent), lock it, append
the message, fsync, and cut a failed append back to where it started; the
strict_mailbox_ownership check; character devices such as /dev/null for /file deliveries.

Must not: decide which mailbox a recipient has or whose rights to use (the agents and
privileges.py); run in the event loop — every function blocks.

Invariants: the mbox is opened with O_NOFOLLOW relative to an O_DIRECTORY descriptor of its
parent and its fstat must match the lstat seen before (same inode, one link, regular file),
refusing symlinks, hard links and files changed under us (the CVE-2008-2936 class); a failed
append leaves the mbox at its old size; the dotlock is always removed. Parameters read: none
directly (size limit, locks and ownership are passed in).
"""

from __future__ import annotations

import contextlib
import os
import stat

from mailcore.delivery.mailbox.files import LimitedWriter, MailboxError, mbox_dsn, remove_quietly
from mailcore.delivery.mailbox.lock import LockSettings, acquire_dotlock, kernel_lock
from mailcore.delivery.mailbox.message import CopyHeaders, MessageFile


def deliver_mbox(path: str, message: MessageFile, headers: CopyHeaders, *,
                 locks: LockSettings, size_limit: int, now: float,
                 chown: tuple[int, int] | None = None, owner_uid: int | None = None,
                 allow_device: bool = False) -> None:
    """Append to an mbox file, creating it (mode 0600, chowned to ``chown``) when absent.

    ``owner_uid``: refuse a mailbox owned by anyone else (strict_mailbox_ownership).
    Raises MailboxError; returns only when the message is appended and synced."""
    directory, name = os.path.split(path)
    if not name:
        raise MailboxError("5.2.0", f"mailbox path {path} has no file name")
    dir_fd = _open_directory(directory or ".")
    dotlock: str | None = None
    fd = -1
    try:
        if "dotlock" in locks.kinds:
            dotlock = acquire_dotlock(dir_fd, name, path, locks)
        fd, st = _safe_open(dir_fd, name, path, chown, allow_device)
        if stat.S_ISCHR(st.st_mode):
            writer = LimitedWriter(fd, 0)
            message.copy(writer, headers, now)
            writer.flush()
            return
        if owner_uid is not None and st.st_uid != owner_uid:
            raise MailboxError("4.2.0", f"destination {path} is not owned by recipient")
        kernel_lock(fd, path, locks)
        _append(fd, message, headers, now, size_limit)
    finally:
        if fd >= 0:
            os.close(fd)
        if dotlock is not None:
            remove_quietly(dotlock, dir_fd)
        os.close(dir_fd)


def _append(fd: int, message: MessageFile, headers: CopyHeaders, now: float,
            size_limit: int) -> None:
    start = os.lseek(fd, 0, os.SEEK_END)
    writer = LimitedWriter(fd, max(size_limit - start, 1) if size_limit else 0)
    try:
        message.copy(writer, headers, now)
        writer.flush()
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)  # never leave half a message for a reader
        raise MailboxError(mbox_dsn(exc.errno or 0, "4.3.0"),
                           f"error writing message: {exc.strerror}") from None


def _open_directory(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise MailboxError(mbox_dsn(exc.errno or 0, "4.2.0"),
                           f"cannot open directory {directory}: {exc.strerror}") from None


def _safe_open(dir_fd: int, name: str, path: str, chown: tuple[int, int] | None,
               allow_device: bool) -> tuple[int, os.stat_result]:
    """Postfix safe_open: create exclusively, or open the very file we lstat'ed."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    for _ in range(2):  # a file created between lstat and O_EXCL gets one more look
        try:
            before = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                                   f"cannot create file {path}: {exc.strerror}") from None
            if chown is not None:
                os.fchown(fd, *chown)
            return fd, os.fstat(fd)
        except OSError as exc:
            raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                               f"cannot examine file {path}: {exc.strerror}") from None
        return _open_existing(dir_fd, name, path, before, flags, allow_device)
    raise MailboxError("4.2.0", f"file {path}: file status changed unexpectedly")


def _open_existing(dir_fd: int, name: str, path: str, before: os.stat_result, flags: int,
                   allow_device: bool) -> tuple[int, os.stat_result]:
    if stat.S_ISLNK(before.st_mode):
        raise MailboxError("5.2.0", f"cannot open file {path}: file is a symbolic link")
    try:
        fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                           f"cannot open file {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    problem = None
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        problem = "file status changed unexpectedly"
    elif stat.S_ISCHR(st.st_mode) and allow_device:
        return fd, st
    elif not stat.S_ISREG(st.st_mode):
        problem = "file is not a regular file"
    elif st.st_nlink != 1:
        problem = f"file has {st.st_nlink} hard links"
    if problem:
        os.close(fd)
        raise MailboxError("5.2.0", f"cannot open file {path}: {problem}")
    os.set_blocking(fd, True)
    return fd, st
