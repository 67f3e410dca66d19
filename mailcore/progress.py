"""A one-line progress display for long command-line operations (bulk delete/hold/requeue,
large listings), drawn on a terminal and nowhere else.

Owns: when to draw (only when the stream is a terminal, or when the caller forces it, which
is how tests see it), how often (at most every ``interval`` seconds), and the line's text:
``label: done/total (pct%)`` or ``label: done`` when the total is unknown.

Must not: write anything when disabled — output piped to a file or another program stays
exactly what it would be without this module.

Invariants: the line is redrawn in place with a carriage return and cleared by ``close``,
so the terminal is left as it was; ``close`` is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


def progress_text(label: str, done: int, total: int | None) -> str:
    if total:
        percent = min(100, done * 100 // total)
        return f"{label}: {done}/{total} ({percent}%)"
    return f"{label}: {done}"


class Progress:
    """``with Progress(sys.stderr, "deleting", total) as p: p.update(n)``."""

    def __init__(self, stream: TextIO, label: str, total: int | None = None, *,
                 tty: bool | None = None, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self.label = label
        self.total = total
        self.enabled = _is_tty(stream) if tty is None else tty
        self._interval = interval
        self._clock = clock
        self._drawn_at: float | None = None
        self._width = 0
        self.done = 0

    def update(self, done: int) -> None:
        """Record progress; redraw when enough time passed since the last drawing."""
        self.done = done
        if not self.enabled:
            return
        now = self._clock()
        if self._drawn_at is not None and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        self._draw(progress_text(self.label, done, self.total))

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def close(self) -> None:
        """Erase the line (if anything was drawn)."""
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
        self._width = 0

    def _draw(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = max(self._width, len(text))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object without a tty
        return False
