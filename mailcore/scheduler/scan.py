"""Queue scans: walking the incoming or deferred state a page at a time.

Owns the cursor of one scan (like Postfix's qmgr_scan over a queue directory): where it is,
whether it must start over when it reaches the end, and whether it is a flush.

Must not: change message states; the queue manager claims each message it takes.

Invariants: at most one page of messages is held; a scan started while running restarts
from the beginning once it ends, so mail that arrived meanwhile is not missed.
"""

from __future__ import annotations

import math
from collections import deque

from mailcore.queue import Queue, QueuedMessage


class Scan:
    def __init__(self, queue: Queue, state: str, page: int) -> None:
        self._queue = queue
        self.state = state
        self._page = max(1, page)
        self._after = ""
        self._buffer: deque[QueuedMessage] = deque()
        self._limit = math.inf  # only messages due by this time
        self.running = False
        self.flush = False  # messages from this scan ignore defer_transports
        self._again: tuple[float, bool] | None = None

    def start(self, due_by: float = math.inf, *, flush: bool = False) -> None:
        """Begin a scan; if one is running, another follows it (a flush joins at once)."""
        if not self.running:
            self._begin(due_by, flush)
            return
        self.flush = self.flush or flush
        previous = self._again
        self._again = (
            max(due_by, previous[0]) if previous else due_by,
            flush or (previous[1] if previous else False),
        )

    async def next(self) -> QueuedMessage | None:
        """The next message of the scan, or None when it has ended."""
        while self.running:
            if self._buffer:
                return self._buffer.popleft()
            if self._limit == math.inf:
                page = await self._queue.page(self.state, self._after, self._page)
            else:
                page = await self._queue.due_page(self.state, self._limit, self._after,
                                                  self._page)
            if page:
                self._buffer.extend(page)
                self._after = page[-1].queue_id
                continue
            self.running = False
            if self._again is not None:
                due_by, flush = self._again
                self._again = None
                self._begin(due_by, flush)
        return None

    def _begin(self, due_by: float, flush: bool) -> None:
        self.running = True
        self.flush = flush
        self._limit = due_by
        self._after = ""
        self._buffer.clear()
