"""Free-space checks for the queue file system (main.cf: queue_minfree, message_size_limit).

Must not: refuse mail itself; smtpd (MAIL FROM) and the sendmail command ask and answer
``452 4.3.1 Insufficient system storage`` when the answer is False.

Invariants: the decision follows Postfix's smtpd_check_size arithmetic, in whole file-system
blocks available to unprivileged users (statvfs f_bavail times f_frsize): refuse when queue_minfree
blocks are not below the free blocks, when the message would eat into queue_minfree, or when
it would take half or more of the free space.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def space_ok(block_size: int, blocks_free: int, min_free_bytes: int, message_size: int) -> bool:
    """The pure decision; ``message_size`` is the SIZE= announced by the client (0 if none)."""
    if block_size <= 0:
        return False
    min_free_blocks = min_free_bytes // block_size
    size_blocks = message_size // block_size
    if min_free_blocks >= blocks_free:
        return False
    if size_blocks >= blocks_free - min_free_blocks:
        return False
    return size_blocks < blocks_free // 2


async def free_space_ok(directory: Path, min_free_bytes: int, message_size: int) -> bool:
    """Whether a message of ``message_size`` bytes may be accepted into ``directory``'s file
    system; statvfs runs in an executor because a hung file system must not stall the loop."""
    loop = asyncio.get_running_loop()
    stat = await loop.run_in_executor(None, os.statvfs, directory)
    return space_ok(stat.f_frsize, stat.f_bavail, min_free_bytes, message_size)


def minfree_warning(queue_minfree: int, message_size_limit: int) -> str | None:
    """Postfix's start-up sanity warning: queue_minfree, when set, should be at least
    1.5 times message_size_limit. Returns the text to log, or None."""
    if queue_minfree > 0 and message_size_limit > 0 and queue_minfree / 1.5 < message_size_limit:
        return (
            f"queue_minfree({queue_minfree}) should be at least "
            f"1.5*message_size_limit({message_size_limit})"
        )
    return None
