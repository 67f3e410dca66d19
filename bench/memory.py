"""Memory under large messages received in parallel: N messages of SIZE MB sent at once over S
SMTP sessions must not make mailcore hold anything like N x SIZE bytes in memory (issue 3:
"fifty 30 MB messages in parallel must not hold 1.5 GB in memory").

Usage: .venv/bin/python bench/memory.py [--messages 50] [--size-mb 30] [--sessions 50]

Owns: the run (free-space check, a mailcore that holds what it accepts, asyncio SMTP clients
that send every message concurrently, sampling the server's resident memory, checking the
queue, stopping) and the report. The reference is measured in the same run: the server's own
RSS just before the load, and the bytes in flight (N x SIZE) that a server buffering messages
in memory would have to hold.

Must not: be run by the test suite, use any address outside 127.0.0.0/8, build a whole message
in memory (the clients write one reused block of at most 64 KiB at a time), or leave a process
or the temporary directory behind: the server is a context manager on an ExitStack and
SIGTERM/SIGHUP become SystemExit so it unwinds.

Invariants: the load runs under one deadline (--time-limit); the sampler thread's loop is
bounded by that deadline and always joined; every reply read is bounded in lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from harness import LOOPBACK, BenchError, free_port
from mailcore_instance import MailcoreInstance

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MAILCORE = REPO / ".venv" / "bin" / "mailcore"
MB = 1_000_000  # "30 MB" and "1.5 GB" in the issue are decimal
MIN_FREE_BYTES = 5_000_000_000
# Spool files, the WAL and the database proper can all hold a copy of the load at one moment.
DISK_COPIES = 3
SAMPLE_SECONDS = 0.05
SETTLE_SECONDS = 1.0  # after the 220, before the baseline: start-up work finishes
BASELINE_READINGS = 5
MAX_REPLY_LINES = 100
RECIPIENT = "to@bench.test"  # local_recipient_maps is empty, so accepted without a lookup
HELO = "bench.test"
# What cleanup may add to each message (its Received header, folded); anything beyond that,
# or a shortfall, means the stored content is not what was sent.
ADDED_BYTES_LIMIT = 4096
# 78 characters and CRLF: never starts with ".", so no dot-stuffing is needed.
LINE = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:78] + b"\r\n"
LINE_LF = LINE[:-2] + b"\n"  # the same line as the queue stores it
BLOCK_LINES = 65536 // len(LINE)
BLOCK = LINE * BLOCK_LINES  # the largest piece a client writes at once


@dataclass(frozen=True)
class Message:
    """One message of the load: its header section and how many body lines follow it."""

    index: int
    head: bytes  # header lines and the empty line, CRLF
    body_lines: int

    @property
    def sender(self) -> str:
        return f"m{self.index}@bench.test"

    @property
    def size(self) -> int:
        """Bytes sent between DATA's 354 and the final "." line."""
        return len(self.head) + self.body_lines * len(LINE)

    @property
    def stored_size(self) -> int:
        """The same content with LF line ends, as the queue keeps it, before cleanup adds
        its headers."""
        return self.size - self.head.count(b"\r\n") - self.body_lines


def make_messages(count: int, size: int) -> list[Message]:
    messages = []
    for index in range(count):
        head = (f"From: <m{index}@bench.test>\r\nTo: <{RECIPIENT}>\r\n"
                f"Subject: memory benchmark message {index}\r\n"
                f"Message-ID: <{index}.memory@bench.test>\r\n"
                "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
        lines = max(1, math.ceil((size - len(head)) / len(LINE)))
        messages.append(Message(index, head, lines))
    return messages


@dataclass
class Progress:
    """What the clients achieved, filled in as they go (local to one run)."""

    accepted: list[int] = field(default_factory=list)  # indexes of messages answered 250


class RssSampler:
    """Reads a resident-memory figure every SAMPLE_SECONDS in a thread of its own, so the
    clients' busy event loop cannot delay or thin out the readings."""

    def __init__(self, read: Callable[[], int | None], time_limit: float):
        self._read = read
        self._max_samples = int(time_limit / SAMPLE_SECONDS) + 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.started = 0.0
        self.samples: list[tuple[float, int]] = []  # (seconds since start, kB)

    def __enter__(self) -> RssSampler:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        for _sample in range(self._max_samples):
            value = self._read()
            if value is None:  # the server is gone
                return
            self.samples.append((time.perf_counter() - self.started, value))
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def peak(self) -> tuple[float, int] | None:
        return max(self.samples, key=lambda sample: sample[1]) if self.samples else None


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One SMTP reply, continuation lines included: (code, text of the last line)."""
    for _line in range(MAX_REPLY_LINES):
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise BenchError(f"the server closed the connection (last read {line[:200]!r})")
        text = line.decode("ascii", "replace").rstrip("\r\n")
        if len(text) < 3 or not text[:3].isdigit():
            raise BenchError(f"not an SMTP reply: {text[:200]!r}")
        if text[3:4] != "-":
            return int(text[:3]), text
    raise BenchError(f"a reply went on for more than {MAX_REPLY_LINES} lines")


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str,
                  expected: int) -> None:
    writer.write(line.encode("ascii") + b"\r\n")
    await writer.drain()
    code, text = await read_reply(reader)
    if code != expected:
        raise BenchError(f"{line.split(':')[0]}: expected {expected}, got {text!r}")


async def send_message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       message: Message, progress: Progress) -> None:
    await command(reader, writer, f"MAIL FROM:<{message.sender}> SIZE={message.size}", 250)
    await command(reader, writer, f"RCPT TO:<{RECIPIENT}>", 250)
    await command(reader, writer, "DATA", 354)
    writer.write(message.head)
    blocks, rest = divmod(message.body_lines, BLOCK_LINES)
    for _block in range(blocks):
        writer.write(BLOCK)
        await writer.drain()  # keeps at most about one block buffered in this process
    writer.write(LINE * rest + b".\r\n")
    await writer.drain()
    code, text = await read_reply(reader)
    if code != 250:
        raise BenchError(f"message {message.index}: end of data answered {text!r}")
    progress.accepted.append(message.index)


async def session(port: int, messages: list[Message], progress: Progress) -> None:
    """One SMTP connection sending ``messages`` one after another."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        code, text = await read_reply(reader)
        if code != 220:
            raise BenchError(f"greeting: {text!r}")
        await command(reader, writer, f"EHLO {HELO}", 250)
        for message in messages:
            await send_message(reader, writer, message, progress)
        await command(reader, writer, "QUIT", 221)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def send_all(port: int, messages: list[Message], sessions: int, time_limit: float,
                   progress: Progress) -> None:
    """Every session at once; session k sends messages k, k + S, k + 2S, ..."""
    try:
        async with asyncio.timeout(time_limit):
            await _sessions(port, messages, sessions, progress)
    except TimeoutError as exc:
        raise BenchError(f"the load did not finish within {time_limit:g}s "
                         f"({len(progress.accepted)} of {len(messages)} answered 250)") from exc


async def _sessions(port: int, messages: list[Message], sessions: int,
                    progress: Progress) -> None:
    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the others
            for k in range(sessions):
                group.create_task(session(port, messages[k::sessions], progress))
    except ExceptionGroup as failures:
        first = failures.exceptions[0]
        if not isinstance(first, BenchError | OSError | ValueError):
            raise
        raise BenchError(f"{type(first).__name__}: {first} ({len(progress.accepted)} of "
                         f"{len(messages)} answered 250)") from None


@dataclass(frozen=True)
class QueueCheck:
    problems: list[str]
    stored: int
    states: Counter[str]
    added: tuple[int, int] | None  # least and most bytes cleanup added to a message


def check_queue(db: Path, messages: list[Message]) -> QueueCheck:
    """Every message exactly once, and its stored content byte for byte what was sent (see
    ``content_problem``). Reads one content chunk at a time, never a whole message."""
    uri = f"file:{db}?mode=ro"
    expected = {m.sender: m for m in messages}
    seen: Counter[str] = Counter()
    states: Counter[str] = Counter()
    problems, added = [], []
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT queue_id, sender, state, content_size FROM messages").fetchall()
        for queue_id, sender, state, content_size in rows:
            seen[sender] += 1
            states[state] += 1
            message = expected.get(sender)
            if message is None:
                problems.append(f"unexpected message from {sender}")
                continue
            chunks = conn.execute("SELECT data FROM content WHERE queue_id = ? ORDER BY seq",
                                  (queue_id,))
            problem = content_problem((row[0] for row in chunks), message, content_size)
            if problem:
                problems.append(f"{queue_id} from {sender}: {problem}")
            else:
                added.append(content_size - message.stored_size)
    problems += [f"{s}: missing from the queue" for s in expected if not seen[s]]
    problems += [f"{s}: queued {n} times" for s, n in seen.items() if n > 1]
    return QueueCheck(problems, len(rows), states, (min(added), max(added)) if added else None)


def content_problem(chunks: Iterable[bytes], message: Message, content_size: int) -> str | None:
    """None when the chunks hold ``content_size`` bytes that end with exactly what was sent
    (LF line ends, as the queue keeps it) after at most ADDED_BYTES_LIMIT bytes that cleanup
    put in front (its Received header); otherwise what is wrong."""
    added = content_size - message.stored_size
    if not 0 <= added <= ADDED_BYTES_LIMIT:
        return (f"content_size {content_size}, but {message.stored_size} bytes were sent "
                f"(with LF line ends)")
    head = message.head.replace(b"\r\n", b"\n")
    offset = 0  # of the current chunk in the stored content
    for chunk in chunks:
        skip = max(0, added - offset)  # the part of this chunk cleanup added
        sent_at = offset + skip - added  # where the rest starts in what was sent
        offset += len(chunk)
        if skip < len(chunk) and chunk[skip:] != sent_bytes(head, sent_at, len(chunk) - skip):
            return f"stored bytes {offset - len(chunk) + skip}..{offset} differ from the sent"
    if offset != content_size:
        return f"content_size {content_size}, but its chunks hold {offset} bytes"
    return None


def sent_bytes(head: bytes, start: int, length: int) -> bytes:
    """Bytes start..start+length of a message as stored: ``head``, then LINE_LF repeated."""
    piece = head[start:start + length]
    if len(piece) == length:
        return piece
    body_at = start + len(piece) - len(head)
    phase, need = body_at % len(LINE_LF), length - len(piece)
    return piece + (LINE_LF * ((phase + need) // len(LINE_LF) + 1))[phase:phase + need]


@dataclass
class Result:
    """The run's measurements, for the report (local to this module)."""

    messages: list[Message]
    sessions: int
    version: str
    baseline_kib: int = 0
    baseline_hwm_kib: int = 0
    seconds: float = 0.0
    progress: Progress = field(default_factory=Progress)
    peak_sample: tuple[float, int] | None = None
    hwm_kib: int | None = None
    queue: QueueCheck | None = None
    error: str | None = None

    @property
    def in_flight(self) -> int:
        return sum(m.size for m in self.messages)

    @property
    def peak_kib(self) -> int:
        return max(self.hwm_kib or 0, self.peak_sample[1] if self.peak_sample else 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=50, help="messages in the load (50)")
    p.add_argument("--size-mb", type=float, default=30.0,
                   help="bytes per message in DATA, in MB of 10^6 bytes (30)")
    p.add_argument("--sessions", type=int, default=None,
                   help="parallel SMTP sessions (default: --messages, one message each)")
    p.add_argument("--max-growth", type=float, default=0.25,
                   help="fail when peak RSS minus baseline exceeds this fraction of the "
                        "bytes in flight (0.25)")
    p.add_argument("--time-limit", type=float, default=300.0,
                   help="seconds the load may take before the run fails (300)")
    p.add_argument("--no-uvloop", action="store_true", help="mailcore serve --no-uvloop")
    p.add_argument("--mailcore", type=Path, default=DEFAULT_MAILCORE,
                   help="the mailcore executable (.venv/bin/mailcore)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ns = p.parse_args(argv)
    if ns.sessions is None:
        ns.sessions = ns.messages
    if ns.messages < 1 or ns.sessions < 1 or ns.size_mb <= 0:
        p.error("--messages, --sessions and --size-mb must be positive")
    if ns.sessions > ns.messages:
        p.error("--sessions must not exceed --messages (a session without a message)")
    if ns.time_limit <= 0 or ns.max_growth <= 0:
        p.error("--time-limit and --max-growth must be positive")
    return ns


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def disk_problem(directory: Path, in_flight: int) -> str | None:
    need = max(MIN_FREE_BYTES, DISK_COPIES * in_flight)
    free = shutil.disk_usage(directory).free
    if free >= need:
        return None
    return (f"memory.py: refusing to run: {directory} has {free / 1e9:.1f} GB free, the run "
            f"needs {need / 1e9:.1f} GB (at least {MIN_FREE_BYTES / 1e9:.0f} GB, and "
            f"{DISK_COPIES} x the {in_flight / 1e9:.2f} GB in flight for spool files, WAL "
            "and database); use a smaller --messages/--size-mb or point TMPDIR elsewhere")


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    messages = make_messages(ns.messages, round(ns.size_mb * MB))
    in_flight = sum(m.size for m in messages)
    refusal = disk_problem(Path(tempfile.gettempdir()), in_flight)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    result = Result(messages, ns.sessions, _version(ns.mailcore))
    root = Path(tempfile.mkdtemp(prefix="mailcore-bench-memory-"))
    try:
        (root / "mailcore").mkdir()
        limit = max(m.size for m in messages) + MB  # SIZE= and the Received header fit
        try:
            with MailcoreInstance(ns.mailcore, root / "mailcore", free_port(),
                                  group_commit=True, message_size_limit=limit,
                                  uvloop=not ns.no_uvloop) as server:
                measure(server, result, ns)
        except BenchError as exc:
            result.error = str(exc)
        print(report(result, ns.max_growth))
    except (KeyboardInterrupt, SystemExit):
        print("memory.py: interrupted; the server it started has been stopped", file=sys.stderr)
        raise
    finally:
        if ns.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if verdict(result, ns.max_growth)[0] else 1


def measure(server: MailcoreInstance, result: Result, ns: argparse.Namespace) -> None:
    """Baseline, the load with the sampler running, then the queue check and VmHWM while the
    server still runs."""
    time.sleep(SETTLE_SECONDS)
    readings = []
    for _reading in range(BASELINE_READINGS):
        reading = server.status_kib("VmRSS")
        if reading is None:
            raise BenchError(server.died() or f"no VmRSS in /proc/{server.pid}/status")
        readings.append(reading)
        time.sleep(SAMPLE_SECONDS)
    result.baseline_kib = int(statistics.median(readings))
    result.baseline_hwm_kib = server.peak_rss_kib() or 0
    with RssSampler(lambda: server.status_kib("VmRSS"), ns.time_limit + 60) as sampler:
        started = time.perf_counter()
        try:
            asyncio.run(send_all(server.port, result.messages, ns.sessions, ns.time_limit,
                                 result.progress))
        except BenchError as exc:
            died = server.died()
            raise BenchError(f"{exc}\n{died}" if died else str(exc)) from None
        finally:
            result.seconds = time.perf_counter() - started
            result.peak_sample = sampler.peak()
        try:
            result.queue = check_queue(server.queue_db, result.messages)
        except sqlite3.Error as exc:
            raise BenchError(f"reading {server.queue_db}: {exc}") from None
        result.hwm_kib = server.peak_rss_kib()
        if sampler.peak() is not None:
            result.peak_sample = sampler.peak()


def verdict(result: Result, max_growth: float) -> tuple[bool, str]:
    if result.error:
        return False, f"FAIL: {result.error}"
    assert result.queue is not None
    if result.queue.problems:
        shown = "; ".join(result.queue.problems[:5])
        more = len(result.queue.problems) - 5
        return False, f"FAIL: queue check: {shown}" + (f" (and {more} more)" if more > 0 else "")
    if not result.peak_kib:
        return False, "FAIL: the server's resident memory could not be read"
    growth = (result.peak_kib - result.baseline_kib) * 1024 / result.in_flight
    if growth > max_growth:
        return False, (f"FAIL: peak RSS grew by {growth:.3f} of the bytes in flight, over the "
                       f"{max_growth:g} limit")
    return True, (f"PASS: every message stored; peak RSS grew by {growth:.3f} of the bytes "
                  f"in flight (limit {max_growth:g})")


def report(result: Result, max_growth: float) -> str:
    messages, n = result.messages, len(result.messages)
    size_mb = messages[0].size / MB
    lines = [f"memory under load: {n} messages x {size_mb:.1f} MB over {result.sessions} "
             f"parallel sessions; {result.version}"]
    if result.seconds:
        accepted = result.progress.accepted
        sent = sum(messages[m].size for m in accepted)
        lines.append(f"sent               {sent:,} bytes in {result.seconds:.1f} s "
                     f"({sent / MB / result.seconds:.1f} MB/s), {len(accepted)}/{n} "
                     "answered 250")
    if result.baseline_kib:
        lines.append(f"baseline RSS       {_mib(result.baseline_kib)} (VmRSS after start, "
                     f"before the load; VmHWM then {_mib(result.baseline_hwm_kib)})")
    if result.peak_kib:
        at = (f"; highest {SAMPLE_SECONDS * 1000:.0f} ms sample {_mib(result.peak_sample[1])}"
              f" at {result.peak_sample[0]:.1f} s" if result.peak_sample else "")
        peak, base = result.peak_kib * 1024, result.baseline_kib * 1024
        lines += [
            f"peak RSS           {_mib(result.peak_kib)} (VmHWM at the end{at})",
            f"peak / baseline    {peak / base:.2f}x",
            f"peak / in flight   {peak / result.in_flight:.4f} "
            f"(in flight: {n} x {size_mb:.1f} MB = {result.in_flight:,} bytes)",
            f"growth / in flight {(peak - base) / result.in_flight:.4f} "
            f"(peak minus baseline; limit {max_growth:g})",
            f"growth per session {(peak - base) / result.sessions / 2**20:.2f} MiB",
        ]
    if result.queue is not None:
        states = ", ".join(f"{s} {c}" for s, c in sorted(result.queue.states.items()))
        added = (f"; cleanup added {result.queue.added[0]}..{result.queue.added[1]} bytes "
                 "per message" if result.queue.added else "")
        lines.append(f"queue              {result.queue.stored} stored for {n} sent "
                     f"({states or 'empty'}){added}")
    lines.append(verdict(result, max_growth)[1])
    return "\n".join(lines)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _version(mailcore: Path) -> str:
    try:
        done = subprocess.run([str(mailcore), "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError:
        return "mailcore ?"
    return done.stdout.strip() or "mailcore ?"


if __name__ == "__main__":
    sys.exit(main())
