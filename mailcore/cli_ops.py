"""``mailcore reload``, ``stop``, ``status`` and ``flush``: running the server day to day, as
``postfix reload``, ``postfix stop``, ``postfix status`` and ``postqueue -f/-s/-i``.

Owns: those subcommands' arguments, their output and exit status (0 done or running, 1 not
running or refused), and ``flush_queue`` for ``mailcore queue flush``. Every command talks to
the running server through the control channel (mailcore.control); ``status`` reads the
queue database itself when the server is not running.

Must not: change the queue or the configuration itself; the server does, or refuses.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from mailcore.config import Config
from mailcore.control import ControlError, ServerNotRunning, request_sync
from mailcore.queue import STATES, open_reader, queue_paths

STOP_MARGIN = 15.0  # beyond shutdown_grace_time, how long `stop` waits for the exit
POLL = 0.1


def add_reload_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reload", help="re-read main.cf, master.cf and tables in the running server")
    parser.set_defaults(command="reload")


def add_stop_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stop", help="stop the running server once sessions and deliveries end")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once the server has the request; do not wait for it "
                             "to exit")
    parser.set_defaults(command="stop")


def add_status_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="say whether the server runs: pid, listeners, queue, uptime")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(command="status")


def add_flush_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flush", help="deliver deferred mail now (postqueue -f, -s SITE, -i QUEUEID)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("-s", "--site", metavar="SITE",
                       help="only mail for SITE (postqueue -s, ETRN)")
    which.add_argument("-i", "--id", dest="queue_id", metavar="QUEUEID",
                       help="only this message (postqueue -i)")
    parser.set_defaults(command="flush")


def socket_path(config: Config) -> Path:
    return config.get_path("control_socket")


def run_reload(ns: argparse.Namespace, load: Callable[[], Config], *,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    config = load()  # a main.cf this command cannot read is refused here, with its errors
    try:
        request_sync(socket_path(config), "reload", timeout=120)
    except ServerNotRunning:
        print("mailcore reload: fatal: the mail system is not running", file=err)
        return 1
    except ControlError as exc:
        print(f"mailcore reload: fatal: the new configuration was refused; the running one "
              f"is kept: {exc}", file=err)
        return 1
    print("mailcore reload: refreshing the mail system", file=out)
    return 0


def run_stop(ns: argparse.Namespace, load: Callable[[], Config], *,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    config = load()
    path = socket_path(config)
    try:
        pid = request_sync(path, "status", timeout=10).get("pid")  # type: ignore[union-attr]
        request_sync(path, "stop", timeout=10)
    except ServerNotRunning:
        print("mailcore stop: fatal: the mail system is not running", file=err)
        return 1
    except (ControlError, AttributeError) as exc:
        print(f"mailcore stop: fatal: {exc}", file=err)
        return 1
    print(f"mailcore stop: stopping the mail system (PID {pid})", file=out)
    if getattr(ns, "no_wait", False):
        return 0
    deadline = time.monotonic() + config.get_time("shutdown_grace_time") + STOP_MARGIN
    while time.monotonic() < deadline:
        try:
            request_sync(path, "status", timeout=5)
        except ServerNotRunning:
            return 0
        except ControlError:
            pass  # shutting down: the channel may close without answering
        time.sleep(POLL)
    print("mailcore stop: warning: the mail system has not exited yet", file=err)
    return 1


def run_status(ns: argparse.Namespace, load: Callable[[], Config], *,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    import json

    out, err = out or sys.stdout, err or sys.stderr
    config = load()
    try:
        status = request_sync(socket_path(config), "status", timeout=10)
    except ServerNotRunning:
        counts = stopped_counts(queue_paths(config.get_path("queue_directory")).db)
        if ns.json:
            print(json.dumps({"running": False, "queue": counts}), file=out)
        else:
            print("mailcore status: the mail system is not running", file=err)
            print(f"  queue: {format_counts(counts)}", file=out)
        return 1
    except ControlError as exc:
        print(f"mailcore status: fatal: {exc}", file=err)
        return 1
    assert isinstance(status, dict)
    if ns.json:
        print(json.dumps({"running": True, **status}), file=out)
    else:
        out.write(format_status(status))
    return 0


def format_status(status: Mapping[str, object]) -> str:
    listeners = status.get("listeners") or []
    shown = ", ".join(_address(str(h), int(p)) for h, p in listeners)  # type: ignore[union-attr]
    queue = status.get("queue") or {}
    return (f"mailcore status: the mail system is running: PID: {status.get('pid')}\n"
            f"  version: {status.get('version')}, configuration {status.get('config_directory')}\n"
            f"  uptime: {format_uptime(float(status.get('uptime') or 0))}\n"  # type: ignore[arg-type]
            f"  listening: {shown or 'nothing'}\n"
            f"  queue: {format_counts(queue)}\n")  # type: ignore[arg-type]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_uptime(seconds: float) -> str:
    left = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size or parts:
            parts.append(f"{left // size}{unit}")
            left %= size
    parts.append(f"{left}s")
    return " ".join(parts)


def format_counts(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return "no queue database"
    return ", ".join(f"{state} {counts.get(state, 0)}" for state in STATES)


def stopped_counts(db: Path) -> dict[str, int] | None:
    """Queue counts read from the database itself (the server is not running)."""
    if not db.exists():
        return None
    try:
        conn = open_reader(db)
        try:
            rows = conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    counts = dict.fromkeys(STATES, 0)
    counts.update({str(state): int(n) for state, n in rows})
    return counts


def run_flush(ns: argparse.Namespace, load: Callable[[], Config], *,
              out: TextIO | None = None, err: TextIO | None = None) -> int:
    return flush_queue(load(), site=ns.site, queue_id=ns.queue_id, prog="mailcore flush",
                       out=out, err=err)


def flush_queue(config: Config, *, site: str | None = None, queue_id: str | None = None,
                prog: str = "mailcore flush", out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """postqueue -f (everything), -s SITE, -i QUEUEID through the running server; the exit
    status for the command (1 when the server is not running, as postqueue fails)."""
    out, err = out or sys.stdout, err or sys.stderr
    path = socket_path(config)
    try:
        if queue_id is not None:
            if not request_sync(path, "flush_id", queue_id=queue_id):
                print(f"{prog}: warning: {queue_id}: not in the deferred queue", file=err)
                return 1
        elif site is not None:
            count = request_sync(path, "flush_site", site=site)
            print(f"{prog}: {count} message(s) for {site} scheduled for delivery", file=out)
        else:
            request_sync(path, "flush")
    except ServerNotRunning:
        print(f"{prog}: fatal: cannot flush the mail queue: the mail system is down",
              file=err)
        return 1
    except ControlError as exc:
        print(f"{prog}: fatal: {exc}", file=err)
        return 1
    return 0
