"""The queue's vocabulary: states, the frozen records that cross into other modules, errors,
and the layout of queue_directory.

Must not: do I/O other than creating the queue directories in ``make_queue_dirs``.

Invariants: every record here is frozen; a ``NewMessage`` carries exactly one content source
(a spooled file or bytes) and at least one recipient.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mailcore.errors import MailcoreError

INCOMING = "incoming"
ACTIVE = "active"
DEFERRED = "deferred"
HOLD = "hold"
CORRUPT = "corrupt"
STATES: tuple[str, ...] = (INCOMING, ACTIVE, DEFERRED, HOLD, CORRUPT)

RECIPIENT_STATUSES: tuple[str, ...] = ("pending", "sent", "deferred", "bounced")

DIR_MODE = 0o700


class QueueError(MailcoreError):
    """Base of the queue's errors."""


class QueueWriteError(QueueError):
    """A write was rolled back and nothing of it is stored (smtpd answers 451 4.3.0)."""


class QueueFullError(QueueWriteError):
    """The queue file system or database is full (smtpd answers 452 4.3.1)."""


class QueueSchemaError(QueueError):
    """The database cannot be used: not SQLite, or written by a newer mailcore."""


class QueueReadError(QueueError):
    """A message vanished or was damaged while it was being read."""


@dataclass(frozen=True)
class QueuePaths:
    """Where everything lives under queue_directory; all components agree on this."""

    root: Path
    db: Path  # the SQLite queue (plus its -wal and -shm files)
    maildrop: Path  # written by the sendmail command, read by pickup
    spool: Path  # scratch files for message content before it is enqueued


def queue_paths(queue_directory: Path) -> QueuePaths:
    root = Path(queue_directory)
    return QueuePaths(
        root=root, db=root / "queue.db", maildrop=root / "maildrop", spool=root / "spool"
    )


def make_queue_dirs(paths: QueuePaths) -> None:
    """Create the queue directories that are missing, private to the mail system's user."""
    for directory in (paths.root, paths.maildrop, paths.spool):
        if not directory.is_dir():
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; a laxer umask must not widen it.
            os.chmod(directory, DIR_MODE)


@dataclass(frozen=True)
class NewRecipient:
    address: str
    orig_rcpt: str | None = None
    notify: str | None = None  # DSN NOTIFY, e.g. "SUCCESS,FAILURE" or "NEVER"
    orcpt: str | None = None  # DSN ORCPT, e.g. "rfc822;user@example.com"


@dataclass(frozen=True)
class NewMessage:
    sender: str
    recipients: tuple[NewRecipient, ...]
    content_path: Path | None
    content: bytes | None
    size: int
    arrival_time: float
    envid: str | None = None
    ret: str | None = None  # DSN RET: "FULL" or "HDRS"
    attrs: Mapping[str, str] = field(default_factory=dict)
    state: str = INCOMING
    queue_id: str | None = None  # pre-allocated with Queue.new_queue_id(), else assigned

    def __post_init__(self) -> None:
        if (self.content_path is None) == (self.content is None):
            raise ValueError("NewMessage needs exactly one of content_path and content")
        if not self.recipients:
            raise ValueError("NewMessage needs at least one recipient")
        if self.state not in STATES or self.state == ACTIVE:
            raise ValueError(f"a message cannot be enqueued in state {self.state!r}")
        if self.size < 0:
            raise ValueError("message size must not be negative")
        bad = [k for k, v in self.attrs.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"message attributes must map str to str: {bad!r}")


@dataclass(frozen=True)
class QueuedRecipient:
    seq: int
    address: str
    orig_rcpt: str | None
    notify: str | None
    orcpt: str | None
    status: str  # one of RECIPIENT_STATUSES
    dsn_status: str | None  # enhanced status code, e.g. "4.4.1"
    reason: str | None
    relay: str | None
    done: bool  # no further delivery attempts for this recipient
    notified: bool  # the DSN (or success notice) for its final status has been queued


@dataclass(frozen=True)
class QueuedMessage:
    queue_id: str
    state: str
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    size: int
    content_size: int
    arrival_time: float
    create_time: float
    envid: str | None
    ret: str | None
    attrs: Mapping[str, str]
    next_attempt: float | None
    last_attempt: float | None
    attempt_count: int
    warned_delay: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))


@dataclass(frozen=True)
class RecoveryReport:
    """What ``Queue.recover`` changed; the caller logs it."""

    schema_version: int
    migrated_from: int | None  # None when the schema was already current (or just created)
    active_to_incoming: int
    corrupt_ids: tuple[str, ...]  # newly moved to the corrupt state
    orphans_removed: int  # recipient/content rows whose message row was missing

    @property
    def corrupted(self) -> int:
        return len(self.corrupt_ids)
