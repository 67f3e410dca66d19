"""End-to-end throughput: messages injected over SMTP until every one has been delivered to a
sink (Postfix's smtp-sink) and the server's queue is empty — mailcore against a stock Postfix
started privately in the same run, both driven by Postfix's smtp-source.

Usage: .venv/bin/python bench/e2e.py [--messages N] [--sessions S] [--size BYTES] [--rounds R]

Owns: the run (a sink per target, start targets relaying to it, warm up, timed rounds in
rotating order, delivery and queue checks, stop) and the report. Figures are ratios against
Postfix measured in the same rounds; absolute messages/s are printed for context only.

Must not: be run by the test suite, use any address outside 127.0.0.0/8, or leave a process
behind: every sink and target is a context manager on one ExitStack, every smtp-source is
stopped in a ``finally``, and SIGTERM/SIGHUP are turned into SystemExit so the stack unwinds.
Every wait has a deadline and every loop a bound.

Invariants: every message a target accepted reaches its sink exactly once. Each batch has its
own envelope sender and smtp-source numbers the recipients (-N), so every message carries a
unique (sender, recipient) pair, which the sink's per-message dump files are checked against.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from harness import (
    LOOPBACK,
    BenchError,
    Listening,
    Workload,
    find_smtp_sink,
    find_smtp_source,
    free_port,
    mailcore_version,
    paired_ratio,
    run_arguments,
    smtp_source_failure,
    spawn_smtp_source,
    stop_process,
    tail,
    terminate,
)
from mailcore_instance import MailcoreInstance
from postfix_instance import PostfixInstance, postfix_available, postfix_version

MIN_SIZE_LIMIT = 10240000  # Postfix's default message_size_limit
RECIPIENT = "to@sink.test"  # a remote domain for both targets: delivered through relayhost
POLL_SECONDS = 0.01  # how often the sink's counter is read while a batch is in flight
QUEUE_POLL_SECONDS = 0.05
SINK_USER = "nobody"  # smtp-sink refuses to keep root privileges (its -u option)
_SINK_COUNTER = re.compile(rb"mesg=(\d+)")
_ANGLE = re.compile(r"<([^>]*)>")

Envelope = tuple[str, str]  # (sender, recipient) as the sink saw them


class Server(Protocol):
    port: int

    def queue_count(self) -> int: ...

    def died(self) -> str | None: ...


class SmtpSink(Listening):
    """``with SmtpSink(tool, root, port) as sink: ...``: smtp-sink on 127.0.0.1:port with a
    running message counter (-c) and one dump file per message (-d) under root/dump."""

    def __init__(self, tool: str, root: Path, port: int, *, start_timeout: float = 30.0):
        self.tool = tool
        self.root = root
        self.port = port
        self.dump_dir = root / "dump"
        self.counter_file = root / "sink.out"
        self.errors = root / "sink.err"
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self) -> None:
        self._start()

    def _start(self) -> None:
        self.dump_dir.mkdir(parents=True)
        argv = [self.tool, "-c", "-h", "sink.test", "-d", f"{self.dump_dir}/m."]
        if os.geteuid() == 0:
            user = pwd.getpwnam(SINK_USER)
            os.chown(self.dump_dir, user.pw_uid, user.pw_gid)
            argv += ["-u", SINK_USER]
        argv += [f"{LOOPBACK}:{self.port}", "256"]
        with self.counter_file.open("wb") as out, self.errors.open("wb") as err:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=err, cwd=self.root)

    def died(self) -> str | None:
        if self._process is None or self._process.poll() is None:
            return None
        return f"smtp-sink exited with status {self._process.returncode}: {tail(self.errors)}"

    def received(self) -> int:
        """Messages received so far: the last "mesg=N" of the -c counter line, which
        smtp-sink rewrites (after a carriage return) at every "." it answers."""
        try:
            with self.counter_file.open("rb") as out:
                out.seek(max(0, out.seek(0, os.SEEK_END) - 256))
                found = _SINK_COUNTER.findall(out.read())
        except OSError as exc:
            raise BenchError(f"cannot read smtp-sink's counter: {exc}") from exc
        return int(found[-1]) if found else 0

    def envelopes(self) -> tuple[Counter[Envelope], int]:
        """(sender, recipient) of every dumped message, and how many dumps had no envelope."""
        found: Counter[Envelope] = Counter()
        unreadable = 0
        for path in self.dump_dir.iterdir():
            with path.open("rb") as dump:
                head = dump.read(4096).decode("ascii", "replace")
            envelope = dump_envelope(head)
            if envelope is None:
                unreadable += 1
            else:
                found[envelope] += 1
        return found, unreadable

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)


def dump_envelope(head: str) -> Envelope | None:
    """The envelope of one smtp-sink dump file from its X-Mail-Args and X-Rcpt-Args lines;
    None when either is missing or a message has more than one recipient."""
    sender = None
    recipients = []
    for line in head.split("\n"):
        if line.startswith("Received:"):
            break  # smtp-sink's own records end with its Received: header
        name, _, value = line.partition(": ")
        addresses = _ANGLE.findall(value)
        if name == "X-Mail-Args" and addresses:
            sender = addresses[0]
        elif name == "X-Rcpt-Args" and addresses:
            recipients.append(addresses[0])
    if sender is None or len(recipients) != 1:
        return None
    return sender, recipients[0]


@dataclass(frozen=True)
class Batch:
    """One smtp-source run that completed: its sender and how many messages got a 250."""

    sender: str
    messages: int


def expected_envelopes(batches: Iterable[Batch], recipient: str) -> Counter[Envelope]:
    """smtp-source -N numbers a run's recipients 1, 2, ... in front of the address."""
    return Counter((batch.sender, f"{number}{recipient}")
                   for batch in batches for number in range(1, batch.messages + 1))


def envelope_mismatch(expected: Counter[Envelope], got: Counter[Envelope],
                      unreadable: int) -> str | None:
    """None when every expected message arrived exactly once and nothing else did."""
    missing = sum((expected - got).values())
    extra = got - expected
    duplicates = sum(count for envelope, count in extra.items() if envelope in expected)
    unexpected = sum(extra.values()) - duplicates
    if not (missing or duplicates or unexpected or unreadable):
        return None
    parts = [f"{n} {what}" for n, what in ((missing, "missing"), (duplicates, "duplicated"),
                                           (unexpected, "unexpected"),
                                           (unreadable, "without an envelope")) if n]
    return "the sink's dump files do not match what was sent: " + ", ".join(parts)


@dataclass
class Target:
    """One server under test, its sink, and what the run learned (local to this module)."""

    name: str
    server: Server | None = None
    sink: SmtpSink | None = None
    seconds: dict[int, float] = field(default_factory=dict)  # round -> wall-clock seconds
    batches: list[Batch] = field(default_factory=list)  # accepted batches, warm-up included
    received: int | None = None  # the sink's final count
    queued: int | None = None  # the queue after the last round
    peak_rss_kib: int | None = None
    error: str | None = None  # the target failed: the run's exit status is 1
    skipped: str | None = None  # not run on purpose, or cannot run here

    @property
    def sent(self) -> int:
        return sum(batch.messages for batch in self.batches)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return run_arguments(argv, __doc__.split("\n\n")[0], messages=1000,
                         time_limit=120.0,
                         time_limit_help="seconds one batch may take from injection to "
                                         "empty queue")


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    source, sink = find_smtp_source(), find_smtp_sink()
    if source is None or sink is None:
        print("e2e.py: smtp-source and smtp-sink come with Postfix "
              "(scripts/install-peers installs them)", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    workload = Workload(ns.messages, ns.sessions, ns.size, ns.reuse_connections,
                        recipient=RECIPIENT, numbered=True)
    root = Path(tempfile.mkdtemp(prefix="mailcore-e2e-"))
    root.chmod(0o755)  # Postfix's daemons (mail_owner) must reach their queue inside it
    try:
        with contextlib.ExitStack() as stack:
            targets = start_targets(stack, ns, workload, root, sink)
            run_all(targets, source, workload, ns, root)
            inspect(targets)
        print(report(targets, workload, ns, mailcore_version(ns.mailcore)))
    except (KeyboardInterrupt, SystemExit):
        print("e2e.py: interrupted; every process it started has been stopped",
              file=sys.stderr)
        raise
    finally:
        if ns.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if any(t.error for t in targets) else 0


def start_targets(stack: contextlib.ExitStack, ns: argparse.Namespace, workload: Workload,
                  root: Path, sink_tool: str) -> list[Target]:
    """A sink for each target first (so the stack stops the target before its sink), then
    the target with relayhost pointing at that sink."""
    limit = max(MIN_SIZE_LIMIT, 2 * workload.size + 65536)
    skip = "--no-postfix" if ns.no_postfix else postfix_available()
    postfix = Target(f"postfix {postfix_version()}" if skip is None else "postfix")
    mailcore = Target("mailcore")
    if skip is None:
        (root / "postfix").mkdir()
        _start(stack, postfix, sink_tool, root / "postfix-sink", lambda relay: PostfixInstance(
            root / "postfix", free_port(), sessions=workload.sessions,
            message_size_limit=limit, relay_port=relay))
    else:
        postfix.skipped = skip
    (root / "mailcore").mkdir()
    _start(stack, mailcore, sink_tool, root / "mailcore-sink", functools.partial(
        _mailcore, ns, root / "mailcore", limit))
    return [postfix, mailcore]


def _mailcore(ns: argparse.Namespace, root: Path, limit: int,
              relay: int) -> MailcoreInstance:
    return MailcoreInstance(ns.mailcore, root, free_port(), group_commit=True,
                            message_size_limit=limit, relay_port=relay,
                            uvloop=not ns.no_uvloop)


def _start(stack: contextlib.ExitStack, target: Target, sink_tool: str, sink_root: Path,
           make: Callable[[int], contextlib.AbstractContextManager[Server]]) -> None:
    try:
        target.sink = stack.enter_context(SmtpSink(sink_tool, sink_root, free_port()))
        target.server = stack.enter_context(make(target.sink.port))
    except BenchError as exc:
        target.error = f"did not start: {exc}"


def run_all(targets: list[Target], tool: str, workload: Workload, ns: argparse.Namespace,
            root: Path) -> None:
    """Warm every target up, then time ``rounds`` batches each, rotating the order per round
    so no target always runs first (or last) on a machine whose load drifts."""
    for target in targets:
        if ns.warmup:
            _drive(target, tool, workload, ns, root, ns.warmup, None)
    for round_no in range(ns.rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            _drive(target, tool, workload, ns, root, workload.messages, round_no)


def _drive(target: Target, tool: str, workload: Workload, ns: argparse.Namespace, root: Path,
           messages: int, round_no: int | None) -> None:
    if target.error is not None or target.server is None or target.sink is None:
        return  # failed earlier, or skipped
    where = "warm-up" if round_no is None else f"round {round_no + 1}"
    # A sender per batch makes every (sender, numbered recipient) pair of the run unique.
    sender = f"{where.replace(' ', '')}@bench.test"
    batch = replace(workload, sender=sender)
    errors = root / f"smtp-source-{target.name.split()[0]}.err"
    try:
        seconds = deliver_batch(target.server, target.sink, tool, batch, messages,
                                expected=target.sent + messages, time_limit=ns.time_limit,
                                errors=errors)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        died = target.server.died() or target.sink.died()
        target.error = f"{where}: {exc}" + (f"\n{died}" if died else "")
        return
    target.batches.append(Batch(sender, messages))
    if round_no is not None:
        target.seconds[round_no] = seconds


def deliver_batch(server: Server, sink: SmtpSink, tool: str, workload: Workload,
                  messages: int, *, expected: int, time_limit: float, errors: Path) -> float:
    """Inject ``messages`` with smtp-source and return the seconds from its start until the
    sink's count reached ``expected`` with the server's queue empty."""
    started = time.perf_counter()
    deadline = started + time_limit
    source = spawn_smtp_source(tool, workload, server.port, messages, errors)
    try:
        reached = _wait_for_sink(source, server, sink, expected, messages, deadline, errors)
        return _wait_for_empty_queue(server, reached, deadline) - started
    finally:
        stop_process(source)


def _wait_for_sink(source: subprocess.Popen[bytes], server: Server, sink: SmtpSink,
                   expected: int, messages: int, deadline: float, errors: Path) -> float:
    """The moment the sink's count was seen at ``expected`` (smtp-source having exited 0)."""
    reached: float | None = None
    count = 0
    for _poll in range(int((deadline - time.perf_counter()) / POLL_SECONDS) + 2):
        count = sink.received()
        now = time.perf_counter()
        if count > expected:
            raise BenchError(f"the sink received {count - expected} message(s) more than "
                             "were sent (a duplicate delivery)")
        status = source.poll()
        if status not in (None, 0):
            raise BenchError(smtp_source_failure(status, errors))
        if count == expected and reached is None:
            reached = now
        if reached is not None and status == 0:
            return reached
        gone = server.died() or sink.died()
        if gone:
            raise BenchError(gone)
        if now >= deadline:
            break
        time.sleep(POLL_SECONDS)
    state = "still running" if source.poll() is None else "done"
    raise BenchError(f"time limit: the sink had {messages - (expected - count)} of {messages} "
                     f"messages (smtp-source {state})")


def _wait_for_empty_queue(server: Server, reached: float, deadline: float) -> float:
    """``reached`` when the first listing after it shows an empty queue (the queue emptied
    between the two moments, and the sink's count says when the work was done); otherwise the
    moment a later listing first does."""
    queued = -1
    limit = max(deadline, time.perf_counter() + 30.0)  # listing itself can be slow
    for attempt in range(int((limit - time.perf_counter()) / QUEUE_POLL_SECONDS) + 2):
        queued = server.queue_count()
        if queued == 0:
            return reached if attempt == 0 else time.perf_counter()
        if time.perf_counter() >= limit:
            break
        time.sleep(QUEUE_POLL_SECONDS)
    raise BenchError(f"the sink has every message but the queue still holds {queued}")


def inspect(targets: list[Target]) -> None:
    """Final counts while everything still runs: the sink's counter and dump files against
    what was accepted, the queue (must be empty), mailcore's peak RSS."""
    for target in targets:
        if target.server is None or target.sink is None:
            continue
        if isinstance(target.server, MailcoreInstance):
            target.peak_rss_kib = target.server.peak_rss_kib()
        try:
            target.received = target.sink.received()
            target.queued = target.server.queue_count()
            envelopes, unreadable = target.sink.envelopes()
        except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
            target.error = target.error or f"final count: {exc}"
            continue
        problem = _count_problem(target, envelopes, unreadable)
        if problem and target.error is None:
            target.error = problem


def _count_problem(target: Target, envelopes: Counter[Envelope], unreadable: int) -> str | None:
    if target.received != target.sent:
        return (f"{target.sent} messages got 250 but the sink received {target.received}")
    if target.error is None and target.queued:
        return f"the queue still holds {target.queued} message(s)"
    return envelope_mismatch(expected_envelopes(target.batches, RECIPIENT), envelopes,
                             unreadable)


def report(targets: list[Target], workload: Workload, ns: argparse.Namespace,
           version: str) -> str:
    postfix = targets[0]
    connection = ("one connection per session" if workload.reuse
                  else "a new connection per message")
    lines = [
        f"end-to-end (inject -> smtp-sink, queue empty): {workload.messages} messages x "
        f"{ns.rounds} rounds per target, {workload.sessions} sessions, {workload.size}-byte "
        f"bodies, {connection}",
        f"{version}; seconds and msg/s are medians over rounds; ratios are paired per round",
        "",
        f"{'target':<24}{'messages':>9}{'seconds':>9}{'msg/s':>9}{'/postfix':>10}"
        f"{'delivered/sent':>16}{'peak RSS':>11}",
    ]
    lines += [_row(target, postfix, workload, ns.rounds) for target in targets]
    notes = [f"{t.name}: not run: {t.skipped}" for t in targets if t.skipped]
    notes += [f"{t.name}: {t.error}" for t in targets if t.error]
    return "\n".join(lines + (["", *notes] if notes else []))


def _row(target: Target, postfix: Target, workload: Workload, rounds: int) -> str:
    if not target.seconds:
        return f"{target.name:<24}{'FAILED' if target.error else 'not run':>9}"
    median_s = statistics.median(target.seconds.values())
    rate = statistics.median(workload.messages / s for s in target.seconds.values())
    ratio = paired_ratio(target, postfix, rounds, workload.messages)
    delivered = f"{target.received}/{target.sent}" if target.received is not None else "?"
    rss = f"{target.peak_rss_kib / 1024:.1f} MiB" if target.peak_rss_kib else "-"
    return (f"{target.name:<24}{workload.messages:>9}{median_s:>9.3f}{rate:>9.0f}"
            f"{(f'{ratio:.2f}' if ratio else 'n/a'):>10}{delivered:>16}{rss:>11}")


if __name__ == "__main__":
    sys.exit(main())
