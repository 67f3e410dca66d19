"""mbox and Maildir writers shared by the local and virtual agents (Postfix mail_copy,
mbox_open, dot_lockfile, safe_open and the maildir delivery code).

Owns: the copy of a queued message into a mailbox with its envelope headers (From_ line,
Return-Path, X-Original-To, Delivered-To, ``>From `` quoting, trailing blank line), mbox
locking (fcntl, flock and dotlock as listed in mailbox_delivery_lock/virtual_mailbox_lock),
truncating a failed append back to where it started, Maildir tmp → new with unique names and
fsync of the file and both directories, mailbox size limits, and refusing a mailbox that is a
symlink, a hard link or changed under us (the CVE-2008-2936 class).

Must not: decide which mailbox a recipient has or whose rights to use; every function here is
blocking and runs in a delivery thread (see privileges.py), never in the event loop.

Invariants: an mbox is opened with O_NOFOLLOW relative to an O_DIRECTORY descriptor of its
parent and its fstat must match the lstat seen before (same inode, one link, regular file);
a failed append leaves the mbox at its old size; a Maildir message appears in new/ only
complete and synced. The fcntl lock is an open-file-description lock (F_OFD_SETLK) so it
excludes other threads of this process as well as other processes (it conflicts with the
POSIX locks Dovecot, mutt and Python's mailbox take).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import secrets
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailcore.address import quote_local
from mailcore.delivery import ContentSource

MAILER_DAEMON = "MAILER-DAEMON"
_OFD_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid, pad


class MailboxError(Exception):
    """A delivery to one mailbox failed; ``dsn`` says whether it is temporary."""

    def __init__(self, dsn: str, text: str):
        super().__init__(text)
        self.dsn, self.text = dsn, text


@dataclass(frozen=True)
class CopyHeaders:
    """What mail_copy prepends: MAIL_COPY_MBOX for mailboxes, fewer for maildir/commands."""

    sender: str
    delivered_to: str | None = None
    orig_rcpt: str | None = None
    from_line: bool = True
    quote_from: bool = True
    blank_line: bool = True


@dataclass(frozen=True)
class LockSettings:
    kinds: tuple[str, ...] = ("fcntl", "dotlock")  # mailbox_delivery_lock
    attempts: int = 20  # deliver_lock_attempts
    delay: float = 1.0  # deliver_lock_delay
    stale_time: float = 500.0  # stale_lock_time
    dotlock_may_fail: bool = False  # /file deliveries: no write access to the directory


def mbox_dsn(err: int, default: str) -> str:
    """Postfix mbox_dsn: full mailbox is permanent, a full disk or a busy file is not."""
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    return default


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
                await loop.run_in_executor(None, _write_all, fd, chunk)
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _LimitedWriter:
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
        _write_all(self._fd, b"".join(self._buffer))
        self._buffer, self._buffered = [], 0


# --- mbox -----------------------------------------------------------------------------------

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
            dotlock = _dotlock(dir_fd, name, path, locks)
        fd, st = _safe_open(dir_fd, name, path, chown, allow_device)
        if stat.S_ISCHR(st.st_mode):
            writer = _LimitedWriter(fd, 0)
            message.copy(writer, headers, now)
            writer.flush()
            return
        if owner_uid is not None and st.st_uid != owner_uid:
            raise MailboxError("4.2.0", f"destination {path} is not owned by recipient")
        _kernel_lock(fd, path, locks)
        _append(fd, message, headers, now, size_limit)
    finally:
        if fd >= 0:
            os.close(fd)
        if dotlock is not None:
            _remove_quietly(dotlock, dir_fd)
        os.close(dir_fd)


def _append(fd: int, message: MessageFile, headers: CopyHeaders, now: float,
            size_limit: int) -> None:
    start = os.lseek(fd, 0, os.SEEK_END)
    writer = _LimitedWriter(fd, max(size_limit - start, 1) if size_limit else 0)
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


def _dotlock(dir_fd: int, name: str, path: str, locks: LockSettings) -> str | None:
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
        _remove_quietly(lock, dir_fd)


def _remove_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _kernel_lock(fd: int, path: str, locks: LockSettings) -> None:
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


# --- Maildir -------------------------------------------------------------------------------

def deliver_maildir(path: str, message: MessageFile, headers: CopyHeaders, *,
                    size_limit: int, hostname: str, now: float) -> None:
    """Write tmp/UNIQUE, sync it, link it to new/UNIQUE and sync both directories.

    ``path`` is the Maildir (with or without its trailing slash); missing directories are
    created (0700). A Maildir or tmp/new that is a symlink is refused."""
    base = path.rstrip("/") or "/"
    _make_dirs(base)
    base_fd = _open_maildir_dir(None, base, base)
    try:
        for sub in ("tmp", "new", "cur"):
            try:
                os.mkdir(sub, 0o700, dir_fd=base_fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                                   f"create maildir directory {base}/{sub}: "
                                   f"{exc.strerror}") from None
        tmp_fd = _open_maildir_dir(base_fd, "tmp", f"{base}/tmp")
        try:
            new_fd = _open_maildir_dir(base_fd, "new", f"{base}/new")
            try:
                _maildir_write(base, tmp_fd, new_fd, message, headers, size_limit,
                               _safe_host(hostname), now)
            finally:
                os.close(new_fd)
        finally:
            os.close(tmp_fd)
    finally:
        os.close(base_fd)


def _make_dirs(base: str) -> None:
    try:
        os.makedirs(base, 0o700, exist_ok=True)
    except OSError as exc:
        raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                           f"create maildir {base}: {exc.strerror}") from None


def _open_maildir_dir(parent: int | None, name: str, shown: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=parent)
    except OSError as exc:
        link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(
            name if parent is None else shown)
        why = "is a symbolic link" if link else exc.strerror
        raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                           f"cannot open maildir directory {shown}: {why}") from None


def _safe_host(hostname: str) -> str:
    return hostname.replace("/", "\\057").replace(":", "\\072")


def _maildir_write(base: str, tmp_fd: int, new_fd: int, message: MessageFile,
                   headers: CopyHeaders, size_limit: int, host: str, now: float) -> None:
    usec = int(now * 1_000_000) % 1_000_000
    tmp_name = f"{int(now)}.P{os.getpid()}Q{secrets.token_hex(6)}M{usec}.{host}"
    try:
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=tmp_fd)
    except OSError as exc:
        raise MailboxError(mbox_dsn(exc.errno or 0, "5.2.0"),
                           f"create maildir file {base}/tmp/{tmp_name}: "
                           f"{exc.strerror}") from None
    linked = False
    try:
        writer = _LimitedWriter(fd, size_limit)
        message.copy(writer, headers, now)
        writer.flush()
        os.fsync(fd)
        st = os.fstat(fd)
        new_name = f"{int(now)}.V{st.st_dev:x}I{st.st_ino:x}M{usec}.{host}"
        os.link(tmp_name, new_name, src_dir_fd=tmp_fd, dst_dir_fd=new_fd,
                follow_symlinks=False)
        linked = True
        os.fsync(new_fd)
    except OSError as exc:
        text = f"create maildir file {base}/new: {exc.strerror}" if not linked else \
            f"sync maildir {base}/new: {exc.strerror}"
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            text = f"error writing message: {exc.strerror}"
        raise MailboxError(mbox_dsn(exc.errno or 0, "4.3.0"), text) from None
    finally:
        os.close(fd)
        _remove_quietly(tmp_name, tmp_fd)
        with contextlib.suppress(OSError):
            os.fsync(tmp_fd)
