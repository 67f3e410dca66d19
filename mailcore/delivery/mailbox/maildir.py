"""Delivery to a Maildir (Postfix's maildir delivery in local and virtual).

Owns: deliver_maildir — create the Maildir and its tmp/new/cur (0700) when missing, write
tmp/UNIQUE, fsync it, link it to new/UNIQUE and fsync both directories; the unique names
(time, pid, random, device/inode) and the hostname quoting in them.

Must not: decide which Maildir a recipient has or whose rights to use; run in the event
loop — every function blocks.

Invariants: a message appears in new/ only complete and synced; the tmp/ file is always
removed; a Maildir, tmp/ or new/ that is a symlink is refused. Parameters read: none
directly (size limit and hostname are passed in).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

from mailcore.delivery.mailbox.files import LimitedWriter, MailboxError, mbox_dsn, remove_quietly
from mailcore.delivery.mailbox.message import CopyHeaders, MessageFile


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
        writer = LimitedWriter(fd, size_limit)
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
        remove_quietly(tmp_name, tmp_fd)
        with contextlib.suppress(OSError):
            os.fsync(tmp_fd)
