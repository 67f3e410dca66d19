"""Queue IDs: their syntax and their allocation.

Owns the shape of a queue ID. A mailcore queue ID looks like a Postfix short queue ID:
upper-case hexadecimal, here always 12 characters — 7 for the wall-clock second (modulo 2**28,
about 8.5 years) and 5 for the microsecond — so IDs sort by allocation time within that span.

Must not: touch the queue database. Uniqueness against the database is the queue's job (its
PRIMARY KEY); this module only guarantees that one allocator never repeats itself.

Invariants: an allocator's IDs strictly increase (modulo the wrap) even when the clock stands
still or steps back, because each allocation takes max(now, previous + 1 microsecond).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_SECONDS_MOD = 1 << 28
_USEC_PER_SECOND = 1_000_000

# Postfix short IDs are plain hex of varying length; accept 10-12 so that IDs written by other
# tools in the same style are still recognised by the command-line tools.
_QUEUE_ID_RE = re.compile(r"[0-9A-F]{10,12}")


def is_queue_id(text: str) -> bool:
    """True when ``text`` has the syntax of a mailcore queue ID."""
    return _QUEUE_ID_RE.fullmatch(text) is not None


def format_queue_id(microseconds: int) -> str:
    """The queue ID for a point in time given in microseconds since the epoch."""
    seconds, usec = divmod(microseconds, _USEC_PER_SECOND)
    return f"{seconds % _SECONDS_MOD:07X}{usec:05X}"


class QueueIdAllocator:
    """Hands out queue IDs that never repeat within one allocator."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._last = -1

    def allocate(self) -> str:
        now = self._clock_ns() // 1000
        # Running ahead of the clock (more than one ID per microsecond) is harmless: the
        # values stay unique, and a restart inside that lead is caught by the PRIMARY KEY.
        value = max(now, self._last + 1)
        self._last = value
        return format_queue_id(value)
