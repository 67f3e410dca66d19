"""Shared pieces of the benchmarks: loopback ports, waiting for an SMTP banner, driving a
target with Postfix's smtp-source (to completion, or started in the background while the
caller watches something else), finding Postfix's test tools, and reading a queue count from
mailq-format output.

Must not: start or stop servers (postfix_instance.py and mailcore_instance.py do), or use
any address outside 127.0.0.0/8. Invariants: every wait has a deadline and every loop a bound
on its iterations; a failure is a BenchError whose text says what went wrong and, where a
program wrote something, ends with what it wrote.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Protocol, Self

LOOPBACK = "127.0.0.1"
SMTP_SOURCE_PATHS = ("/usr/sbin/smtp-source", "/usr/bin/smtp-source")
SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/bin/smtp-sink")
_MAILQ_TOTAL = re.compile(r"^-- \d+ Kbytes in (\d+) Requests?\.$", re.MULTILINE)
_MAILQ_EMPTY = "Mail queue is empty"


class BenchError(Exception):
    """A target could not be set up, driven or checked; the text is for the reader."""


@dataclass(frozen=True)
class Workload:
    """What smtp-source sends: the same for every target in one run."""

    messages: int
    sessions: int
    size: int  # body bytes (smtp-source -l), headers not included
    reuse: bool  # smtp-source -d: several messages per connection
    sender: str = "from@bench.test"
    recipient: str = "to@bench.test"
    helo: str = "bench.test"
    numbered: bool = False  # smtp-source -N: recipient i of a run is "<i><recipient>"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody was listening on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, or a note that it is missing (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def wait_for_banner(port: int, *, timeout: float, gone: Callable[[], str | None]) -> None:
    """Return once 127.0.0.1:port greets with 220; raise BenchError after ``timeout`` seconds
    or as soon as ``gone()`` returns a reason (the server process died)."""
    deadline = time.monotonic() + timeout
    last = "no connection yet"
    for _attempt in range(int(timeout / 0.05) + 1):
        reason = gone()
        if reason is not None:
            raise BenchError(reason)
        try:
            greeting = _read_banner(port)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if greeting.startswith("220"):
                return
            last = f"greeting {greeting!r}"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise BenchError(f"127.0.0.1:{port} did not greet with 220 within {timeout:g}s ({last})")


def _read_banner(port: int) -> str:
    with socket.create_connection((LOOPBACK, port), timeout=2.0) as sock:
        data = b""
        for _chunk in range(64):  # a banner is one line; bounded in case it never ends
            piece = sock.recv(512)
            data += piece
            if not piece or b"\n" in data:
                break
        if data.startswith(b"220"):
            sock.sendall(b"QUIT\r\n")
            sock.recv(512)
        return data.decode("ascii", "replace").strip()


def find_smtp_source() -> str | None:
    return _find_tool("smtp-source", SMTP_SOURCE_PATHS)


def find_smtp_sink() -> str | None:
    return _find_tool("smtp-sink", SMTP_SINK_PATHS)


def _find_tool(name: str, paths: tuple[str, ...]) -> str | None:
    for candidate in (shutil.which(name), *paths):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def smtp_source_command(tool: str, workload: Workload, port: int, messages: int) -> list[str]:
    """smtp-source's arguments. -M gives the HELO name, so smtp-source looks up no host name."""
    command = [tool, "-s", str(workload.sessions), "-m", str(messages),
               "-l", str(workload.size), "-f", workload.sender, "-t", workload.recipient,
               "-M", workload.helo]
    if workload.reuse:
        command.append("-d")
    if workload.numbered:
        command.append("-N")
    command.append(f"{LOOPBACK}:{port}")
    return command


def run_smtp_source(tool: str, workload: Workload, port: int, messages: int,
                    time_limit: float) -> float:
    """Send ``messages`` messages and return the wall-clock seconds it took. smtp-source stops
    at the first reply that is not the expected success, so exit status 0 means every message
    got its 250."""
    command = smtp_source_command(tool, workload, port, messages)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace",
                              timeout=time_limit, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"smtp-source did not finish {messages} messages within "
                         f"{time_limit:g}s (killed)") from exc
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip())[-800:]
        raise BenchError(f"smtp-source exited with status {done.returncode}: {said}")
    return elapsed


def spawn_smtp_source(tool: str, workload: Workload, port: int, messages: int,
                      errors: Path) -> subprocess.Popen[bytes]:
    """Start smtp-source in the background, its diagnostics going to ``errors``. The caller
    owns the process: it must wait for it or kill it (``stop_process``)."""
    command = smtp_source_command(tool, workload, port, messages)
    with errors.open("wb") as err:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)


def smtp_source_failure(returncode: int, errors: Path) -> str:
    """The BenchError text for an smtp-source that exited with ``returncode`` != 0."""
    return f"smtp-source exited with status {returncode}: {tail(errors, 5)[-800:]}"


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the process."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def mailq_count(text: str) -> int:
    """The number of messages in mailq-format output (Postfix's postqueue -p, mailcore queue
    list): the figure in the closing "-- N Kbytes in M Requests." line."""
    if _MAILQ_EMPTY in text:
        return 0
    totals = _MAILQ_TOTAL.findall(text)
    if not totals:
        raise BenchError(f"no queue total in the listing: {text.strip()[-300:]!r}")
    return int(totals[-1])


DEFAULT_MAILCORE = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "mailcore"


def run_arguments(argv: list[str] | None, description: str, *, messages: int,
                  time_limit: float, time_limit_help: str) -> argparse.Namespace:
    """The options accept.py and e2e.py share, checked."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--messages", type=int, default=messages,
                   help=f"messages per round ({messages})")
    p.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (20)")
    p.add_argument("--size", type=int, default=1000, help="body bytes per message (1000)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per target (3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed messages per target before round 1 (default: --sessions)")
    p.add_argument("--reuse-connections", action="store_true",
                   help="smtp-source -d: keep each session's connection for many messages")
    p.add_argument("--time-limit", type=float, default=time_limit,
                   help=f"{time_limit_help} ({time_limit:g})")
    p.add_argument("--no-postfix", action="store_true", help="measure mailcore only")
    p.add_argument("--no-uvloop", action="store_true", help="mailcore serve --no-uvloop")
    p.add_argument("--mailcore", type=Path, default=DEFAULT_MAILCORE,
                   help="the mailcore executable (.venv/bin/mailcore)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ns = p.parse_args(argv)
    for name in ("messages", "sessions", "size", "rounds"):
        if getattr(ns, name) < 1:
            p.error(f"--{name} must be at least 1")
    if ns.warmup is None:
        ns.warmup = ns.sessions
    if ns.warmup < 0 or ns.time_limit <= 0:
        p.error("--warmup must not be negative and --time-limit must be positive")
    return ns


def terminate(signum: int, frame: FrameType | None) -> None:
    """A signal handler that unwinds (so every finally stops its processes) and exits."""
    raise SystemExit(128 + signum)


class Timed(Protocol):
    """A benchmark target: wall-clock seconds per completed round."""

    seconds: Mapping[int, float]


def paired_ratio(a: Timed, b: Timed, rounds: int, messages: int) -> float | None:
    """Median over rounds of a's rate / b's rate, using only rounds both completed: pairing
    within a round cancels most of the noise a shared machine adds."""
    ratios = []
    for round_no in range(rounds):
        seconds_a, seconds_b = a.seconds.get(round_no), b.seconds.get(round_no)
        if seconds_a and seconds_b:
            ratios.append((messages / seconds_a) / (messages / seconds_b))
    return statistics.median(ratios) if ratios else None


def mailcore_version(executable: Path) -> str:
    try:
        done = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError:
        return "mailcore ?"
    return done.stdout.strip() or "mailcore ?"


class Listening:
    """A process serving SMTP on 127.0.0.1:port for one benchmark: ``with X(...) as x``
    starts it and waits for its 220; leaving the block (or failing to start) stops it.
    Subclasses set ``port`` and ``_start_timeout`` and provide _launch, died and stop."""

    port: int
    _start_timeout: float

    def _launch(self) -> None:
        raise BenchError(f"{type(self).__name__} does not say how it starts")

    def died(self) -> str | None:
        return None

    def stop(self) -> None:
        return None

    def __enter__(self) -> Self:
        try:
            self._launch()
            wait_for_banner(self.port, timeout=self._start_timeout, gone=self.died)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
