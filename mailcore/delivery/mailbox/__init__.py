"""mbox and Maildir writers shared by the local and virtual agents (Postfix mail_copy,
mbox_open, dot_lockfile, safe_open and the maildir delivery code).

Owns, by part: message.py — the queued message in an unlinked temporary file and its copy
with envelope headers (MessageFile, CopyHeaders); files.py — MailboxError, the errno → DSN
mapping and size-limited writes; lock.py — dotlock, fcntl and flock locking (LockSettings);
mbox.py — safe open, lock, append and truncate-on-failure (deliver_mbox); maildir.py —
tmp → new with unique names and fsync of the file and both directories (deliver_maildir).

Must not: decide which mailbox a recipient has or whose rights to use; every function here
except ``MessageFile.load`` is blocking and runs in a delivery thread (see privileges.py),
never in the event loop.

Invariants: an mbox is opened with O_NOFOLLOW relative to an O_DIRECTORY descriptor of its
parent and its fstat must match the lstat seen before (same inode, one link, regular file);
a failed append leaves the mbox at its old size; a Maildir message appears in new/ only
complete and synced; the fcntl lock is an open-file-description lock (F_OFD_SETLK) so it
excludes other threads of this process as well as other processes. Parameters read: none
directly — the agents pass sizes, lock settings and hostnames in.
"""

from mailcore.delivery.mailbox.files import MailboxError, mbox_dsn
from mailcore.delivery.mailbox.lock import LockSettings
from mailcore.delivery.mailbox.maildir import deliver_maildir
from mailcore.delivery.mailbox.mbox import deliver_mbox
from mailcore.delivery.mailbox.message import MAILER_DAEMON, CopyHeaders, MessageFile

__all__ = [
    "MAILER_DAEMON",
    "CopyHeaders",
    "LockSettings",
    "MailboxError",
    "MessageFile",
    "deliver_maildir",
    "deliver_mbox",
    "mbox_dsn",
]
