"""SMTP acceptance throughput: mailcore (group commit, and one commit per message) against a
stock Postfix started privately in the same run, all driven by Postfix's smtp-source.

Usage: .venv/bin/python bench/accept.py [--messages N] [--sessions S] [--size BYTES] ...

Owns: the run (start targets, warm up, timed rounds in rotating order, queue check, stop) and
the report. Figures are ratios against Postfix measured in the same rounds, because the machine
is shared and noisy; absolute messages/s are printed for context only.

Must not: be run by the test suite, use any address outside 127.0.0.0/8, or leave a process
behind: every target is a context manager on one ExitStack, and SIGTERM/SIGHUP are turned into
SystemExit so the stack unwinds. Every smtp-source run has a time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness import (
    BenchError,
    Workload,
    find_smtp_source,
    free_port,
    mailcore_version,
    paired_ratio,
    run_arguments,
    run_smtp_source,
    terminate,
)
from mailcore_instance import MailcoreInstance
from postfix_instance import PostfixInstance, postfix_available, postfix_version

MIN_SIZE_LIMIT = 10240000  # Postfix's default message_size_limit


class Server(Protocol):
    port: int

    def queue_count(self) -> int: ...

    def died(self) -> str | None: ...


@dataclass
class Target:
    """One server under test and what the run learned about it (local to this module)."""

    name: str
    server: Server | None = None
    seconds: dict[int, float] = field(default_factory=dict)  # round -> wall-clock seconds
    sent: int = 0  # messages smtp-source finished, warm-up included
    queued: int | None = None
    peak_rss_kib: int | None = None
    error: str | None = None  # the target failed: the run's exit status is 1
    skipped: str | None = None  # the target was not run on purpose, or cannot run here


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return run_arguments(argv, __doc__.split("\n\n")[0], messages=2000,
                         time_limit=60.0,
                         time_limit_help="seconds one smtp-source run may take before "
                                         "it is killed")


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    tool = find_smtp_source()
    if tool is None:
        print("accept.py: smtp-source not found; it comes with Postfix "
              "(scripts/install-peers installs it)", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    workload = Workload(ns.messages, ns.sessions, ns.size, ns.reuse_connections)
    root = Path(tempfile.mkdtemp(prefix="mailcore-bench-"))
    root.chmod(0o755)  # Postfix's daemons (mail_owner) must reach their queue inside it
    try:
        with contextlib.ExitStack() as stack:
            targets = start_targets(stack, ns, workload, root)
            run_all(targets, tool, workload, ns)
            inspect(targets)
        print(report(targets, workload, ns, mailcore_version(ns.mailcore)))
    except (KeyboardInterrupt, SystemExit):
        print("accept.py: interrupted; every server it started has been stopped",
              file=sys.stderr)
        raise
    finally:
        if ns.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if any(t.error for t in targets) else 0


def start_targets(stack: contextlib.ExitStack, ns: argparse.Namespace, workload: Workload,
                  root: Path) -> list[Target]:
    limit = max(MIN_SIZE_LIMIT, 2 * workload.size + 65536)
    targets = []
    skip = "--no-postfix" if ns.no_postfix else postfix_available()
    postfix = Target(f"postfix {postfix_version()}" if skip is None else "postfix")
    if skip is None:
        (root / "postfix").mkdir()
        _start(stack, postfix, functools.partial(
            PostfixInstance, root / "postfix", free_port(), sessions=workload.sessions,
            message_size_limit=limit))
    else:
        postfix.skipped = skip
    targets.append(postfix)
    for key, name, group in (("group", "mailcore group commit", True),
                             ("single", "mailcore commit per message", False)):
        target = Target(name)
        (root / f"mailcore-{key}").mkdir()
        _start(stack, target, functools.partial(
            MailcoreInstance, ns.mailcore, root / f"mailcore-{key}", free_port(),
            group_commit=group, message_size_limit=limit, uvloop=not ns.no_uvloop))
        targets.append(target)
    return targets


def _start(stack: contextlib.ExitStack, target: Target,
           make: Callable[[], contextlib.AbstractContextManager[Server]]) -> None:
    try:
        target.server = stack.enter_context(make())
    except BenchError as exc:
        target.error = f"did not start: {exc}"


def run_all(targets: list[Target], tool: str, workload: Workload,
            ns: argparse.Namespace) -> None:
    """Warm every target up, then time ``rounds`` runs each, rotating the order per round so
    no target always runs first (or last) on a machine whose load drifts."""
    for target in targets:
        if ns.warmup:
            _drive(target, tool, workload, ns.warmup, ns.time_limit, None)
    for round_no in range(ns.rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            _drive(target, tool, workload, workload.messages, ns.time_limit, round_no)


def _drive(target: Target, tool: str, workload: Workload, messages: int, time_limit: float,
           round_no: int | None) -> None:
    if target.error is not None or target.server is None:
        return  # failed earlier, or skipped
    try:
        seconds = run_smtp_source(tool, workload, target.server.port, messages, time_limit)
    except BenchError as exc:
        where = "warm-up" if round_no is None else f"round {round_no + 1}"
        died = target.server.died()
        target.error = f"{where}: {exc}" + (f"\n{died}" if died else "")
        return
    target.sent += messages
    if round_no is not None:
        target.seconds[round_no] = seconds


def inspect(targets: list[Target]) -> None:
    """Queue counts (accepted means stored) and mailcore's peak RSS, while still running."""
    for target in targets:
        if target.server is None:
            continue
        if isinstance(target.server, MailcoreInstance):
            target.peak_rss_kib = target.server.peak_rss_kib()
        try:
            target.queued = target.server.queue_count()
        except (BenchError, subprocess.TimeoutExpired) as exc:
            target.error = target.error or f"queue count: {exc}"
            continue
        if target.queued != target.sent and target.error is None:
            target.error = (f"{target.sent} messages got 250 but the queue holds "
                            f"{target.queued}")


def report(targets: list[Target], workload: Workload, ns: argparse.Namespace,
           version: str) -> str:
    postfix = targets[0]
    connection = ("one connection per session" if workload.reuse
                  else "a new connection per message")
    lines = [
        f"SMTP acceptance: {workload.messages} messages x {ns.rounds} rounds per target, "
        f"{workload.sessions} sessions, {workload.size}-byte bodies, {connection}",
        f"{version}; seconds and msg/s are medians over rounds; ratios are paired per round",
        "",
        f"{'target':<30}{'messages':>9}{'seconds':>9}{'msg/s':>9}{'/postfix':>10}"
        f"{'queued/sent':>14}{'peak RSS':>11}",
    ]
    for target in targets:
        lines.append(_row(target, postfix, workload, ns.rounds))
    group, single = targets[1], targets[2]
    speedup = paired_ratio(group, single, ns.rounds, workload.messages)
    lines.append("")
    lines.append("group commit speed-up (group / per message): "
                 + (f"{speedup:.2f}x" if speedup else "n/a"))
    for target in targets:
        if target.skipped:
            lines.append(f"{target.name}: not run: {target.skipped}")
        if target.error:
            lines.append(f"{target.name}: {target.error}")
    return "\n".join(lines)


def _row(target: Target, postfix: Target, workload: Workload, rounds: int) -> str:
    if not target.seconds:
        return f"{target.name:<30}{'FAILED' if target.error else 'not run':>9}"
    median_s = statistics.median(target.seconds.values())
    rate = statistics.median(workload.messages / s for s in target.seconds.values())
    ratio = paired_ratio(target, postfix, rounds, workload.messages)
    queued = f"{target.queued}/{target.sent}" if target.queued is not None else "?"
    rss = f"{target.peak_rss_kib / 1024:.1f} MiB" if target.peak_rss_kib else "-"
    return (f"{target.name:<30}{workload.messages:>9}{median_s:>9.3f}{rate:>9.0f}"
            f"{(f'{ratio:.2f}' if ratio else 'n/a'):>10}{queued:>14}{rss:>11}")


if __name__ == "__main__":
    sys.exit(main())
