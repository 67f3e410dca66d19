"""mbox locking (Postfix dot_lockfile, deliver_flock): the lock kinds listed in
mailbox_delivery_lock / virtual_mailbox_lock, retried deliver_lock_attempts times.

Owns: LockSettings, the NAME.lock dotlock (with stale-lock removal after stale_lock_time)
and the kernel locks (fcntl, flock) taken on an open mailbox descriptor.

Must not: open or write mailboxes (mbox.py); every function blocks (time.sleep between
attempts) and runs in a delivery thread, never in the event loop.

Invariants: the fcntl lock is an open-file-description lock (F_OFD_SETLK), so it excludes
other threads of this process as well as other processes, and it conflicts with the POSIX
locks Dovecot, mutt and Python's mailbox take; a dotlock is created relative to the
mailbox's directory descriptor and removed by the caller. Parameters read: none directly —
LockSettings carries mailbox_delivery_lock, deliver_lock_attempts, deliver_lock_delay and
stale_lock_time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from dataclasses import dataclass

from mailcore.delivery.mailbox.files import MailboxError, mbox_dsn, remove_quietly

_OFD_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid, pad


@dataclass(frozen=True)
class LockSettings:
    kinds: tuple[str, ...] = ("fcntl", "dotlock")  # mailbox_delivery_lock
    attempts: int = 20  # deliver_lock_attempts
    delay: float = 1.0  # deliver_lock_delay
    stale_time: float = 500.0  # stale_lock_time
    dotlock_may_fail: bool = False  # /file deliveries: no write access to the directory


def acquire_dotlock(dir_fd: int, name: str, path: str, locks: LockSettings) -> str | None:
    """Create NAME.lock exclusively (what Dovecot, mutt and Python's mailbox honour)."""
    lock = name + ".lock"
    for attempt in range(max(locks.attempts, 1)):
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0,
                             dir_fd=dir_fd))
            return lock
        except FileExistsError:
            _remove_if_stale(dir_fd, lock, locks.stale_time)
        except OSError as exc:
            if locks.dotlock_may_fail and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None
            raise MailboxError(mbox_dsn(exc.errno or 0, "4.2.0"),
                               f"unable to create lock file {path}.lock: "
                               f"{exc.strerror}") from None
        if attempt + 1 < locks.attempts:
            time.sleep(locks.delay)
    raise MailboxError("4.2.0", f"unable to create lock file {path}.lock: "
                                f"{os.strerror(errno.EEXIST)}")


def _remove_if_stale(dir_fd: int, lock: str, stale_time: float) -> None:
    try:
        age = time.time() - os.lstat(lock, dir_fd=dir_fd).st_mtime
    except OSError:
        return
    if age > stale_time:
        remove_quietly(lock, dir_fd)


def kernel_lock(fd: int, path: str, locks: LockSettings) -> None:
    kinds = [k for k in locks.kinds if k in ("fcntl", "flock")]
    for kind in kinds:
        for attempt in range(max(locks.attempts, 1)):
            try:
                if kind == "fcntl":
                    request = struct.pack(_OFD_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise MailboxError("4.2.0", f"unable to lock {path} for exclusive "
                                       f"access: {exc.strerror}") from None
            if attempt + 1 < locks.attempts:
                time.sleep(locks.delay)
        else:
            raise MailboxError("4.2.0", f"unable to lock {path} for exclusive access: "
                                        f"{os.strerror(errno.EAGAIN)}")
