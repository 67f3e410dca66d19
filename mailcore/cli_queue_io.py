"""What every ``mailcore queue`` subcommand shares: where it reads and writes (Streams), the
program name in its messages, the sysexits.h statuses, and read-only looks at the queue
database (its path, a message count by state).

Must not: parse arguments or perform an action (cli_queue.py, cli_queue_admin.py); write to
the queue database.

Invariants: every failure is one line ``mailcore queue: fatal: …`` and every warning one line
``mailcore queue: warning: …``, both on stderr; a queue database that does not exist counts
as empty. Parameters read: queue_directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mailcore.config import Config
from mailcore.queue import open_reader, queue_paths

PROG = "mailcore queue"
EX_OK, EX_USAGE, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE, EX_TEMPFAIL = 0, 64, 66, 69, 70, 75

Send = Callable[..., object]  # request_sync's signature: (socket_path, op, timeout=, **args)


@dataclass
class Streams:
    """Where a command reads and writes; tests pass their own (and force the tty flag)."""

    out: TextIO
    err: TextIO
    stdin: TextIO
    tty: bool | None = None  # None: ask stderr


def fail(streams: Streams, message: str, status: int) -> int:
    print(f"{PROG}: fatal: {message}", file=streams.err)
    return status


def warn(streams: Streams, message: str) -> None:
    print(f"{PROG}: warning: {message}", file=streams.err)


def queue_db(config: Config) -> Path:
    return queue_paths(config.get_path("queue_directory")).db


def count_messages(config: Config, states: Iterable[str]) -> int | None:
    db = queue_db(config)
    if not db.exists():
        return 0
    chosen = sorted(set(states))
    conn = open_reader(db)
    try:
        marks = ", ".join("?" * len(chosen))
        row = conn.execute(f"SELECT count(*) FROM messages WHERE state IN ({marks})",
                           chosen).fetchone()
        return int(row[0])
    finally:
        conn.close()
