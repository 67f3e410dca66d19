"""``mailcore queue …``: Postfix's postqueue, postsuper, postcat and qshape as subcommands.

Owns: the subcommands' arguments and their output — list (mailq, with filters and --json),
flush (postqueue -f / -s / -i), show (postcat -q), delete / hold / release / requeue
(postsuper -d / -h / -H / -r) and shape (qshape) — and the choice between the running server
and the queue database: flush always needs the server ("mail system is down" otherwise);
postsuper's actions go through the control channel when the server answers, so the
scheduler applies them safely to mail it is delivering, and straight to the database (one
writer: a ``Queue`` opened here) when it does not.

Parts: cli_queue_io.py (Streams, exit statuses, messages, queue counts) and
cli_queue_admin.py (delete / hold / release / requeue); their public names are re-exported
here.

Must not: format listings (mailq.py), envelopes (postcat.py) or tables (qshape.py); decide
what an administrative action does to a message (queue/admin.py, QueueManager).

Invariants: listings and shape stream the queue a page at a time; queue IDs given on the
command line or on stdin (``-``) are sent in batches, so a million IDs never sit in one
request; progress goes to stderr only when it is a terminal; every failure is one line
``mailcore queue: fatal: …`` and an exit status from sysexits.h.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, TextIO

from mailcore.cli_queue_admin import ADMIN_TIMEOUT, OPS, REQUEST_BATCH, add_admin_parsers, do_admin
from mailcore.cli_queue_io import (
    EX_NOINPUT,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    PROG,
    Send,
    Streams,
    count_messages,
    fail,
    queue_db,
    warn,
)
from mailcore.config import Config
from mailcore.control import ControlError, ServerNotRunning, request_sync
from mailcore.errors import MailcoreError, UsageError
from mailcore.mailq import (
    LISTED_STATES,
    MAILDROP,
    QUEUE_NAMES,
    ListedMessage,
    ListFilter,
    iter_listing,
    iter_maildrop,
    iter_queue,
    write_listing,
)
from mailcore.postcat import Sections, write_message
from mailcore.progress import Progress
from mailcore.qshape import Shape, ShapeOptions, format_shape
from mailcore.queue import QueueError, admin, open_reader, queue_paths

__all__ = [
    "ADMIN_TIMEOUT",
    "EX_NOINPUT",
    "EX_OK",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "FLUSH_DOWN",
    "OPS",
    "PROG",
    "REQUEST_BATCH",
    "SHAPE_QUEUES",
    "Send",
    "Streams",
    "add_queue_parser",
    "do_admin",
    "do_flush",
    "do_list",
    "do_shape",
    "do_show",
    "run_queue",
]

FLUSH_DOWN = "Cannot flush mail queue - mail system is down"
SHAPE_QUEUES = ("incoming", "active", "deferred", "hold", MAILDROP, "all")


# ---------------------------------------------------------------------------- the parser


def add_queue_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queue", help="the mail queue: list, flush, show, delete, hold, release, requeue, "
        "shape", description="Queue tools (postqueue, postsuper, postcat, qshape).")
    parser.set_defaults(command="queue")
    actions = parser.add_subparsers(dest="queue_command", metavar="ACTION")
    actions.required = True
    _add_list(actions)
    flush = actions.add_parser("flush", help="deliver queued mail now (postqueue -f/-s/-i)")
    flush.add_argument("queue_id", nargs="?", help="only this deferred message (postqueue -i)")
    flush.add_argument("--site", metavar="DOMAIN", help="mail for DOMAIN (postqueue -s, ETRN)")
    show = actions.add_parser("show", help="a message's envelope and content (postcat -q)")
    show.add_argument("queue_ids", nargs="+", metavar="ID")
    show.add_argument("--envelope", action="store_true", help="the envelope records")
    show.add_argument("--headers", action="store_true", help="the message headers")
    show.add_argument("--body", action="store_true", help="the message body")
    add_admin_parsers(actions)
    _add_shape(actions)
    return parser


def _add_list(actions: Any) -> None:
    listing = actions.add_parser("list", help="list the queue in mailq's format")
    listing.add_argument("--json", action="store_true",
                         help="one JSON object per message per line (postqueue -j)")
    listing.add_argument("--queue", action="append", metavar="QUEUE",
                         help=f"only these queues ({', '.join(QUEUE_NAMES)}); repeat or "
                         "separate with commas")
    listing.add_argument("--sender", metavar="ADDRESS", help="only mail from ADDRESS "
                         "(MAILER-DAEMON or <> for the null sender)")
    listing.add_argument("--recipient", metavar="ADDRESS",
                         help="only mail with ADDRESS among its pending recipients")
    listing.add_argument("--domain", metavar="DOMAIN",
                         help="only mail with a pending recipient in DOMAIN or a subdomain")


def _add_shape(actions: Any) -> None:
    shape = actions.add_parser("shape", help="domains by message age (qshape)")
    shape.add_argument("queues", nargs="*", metavar="QUEUE",
                       help=f"queues to count ({', '.join(SHAPE_QUEUES)}); default: "
                       "incoming active")
    shape.add_argument("-s", dest="senders", action="store_true", help="sender domains")
    shape.add_argument("-p", dest="parents", action="store_true", help="parent domains too")
    shape.add_argument("-m", dest="min_subdomains", type=int, default=5, metavar="N",
                       help="subdomains a parent domain needs to be shown (default 5)")
    shape.add_argument("-b", dest="buckets", type=int, default=10, metavar="N",
                       help="number of age buckets (default 10)")
    shape.add_argument("-t", dest="tick", type=float, default=5, metavar="MINUTES",
                       help="age limit of the first bucket (default 5)")
    shape.add_argument("-l", dest="linear", action="store_true", help="linear bucket ages")
    shape.add_argument("-w", dest="width", type=int, default=80, metavar="COLUMNS",
                       help="output width (at least 80)")
    shape.add_argument("-n", dest="top", type=int, default=None, metavar="N",
                       help="show only the top N rows (default: 20 on a terminal, else all)")


# ---------------------------------------------------------------------------- dispatch


def run_queue(ns: argparse.Namespace, load_config: Callable[[], Config], *,
              streams: Streams | None = None, send: Send = request_sync,
              clock: Callable[[], float] = time.time) -> int:
    """One ``mailcore queue ACTION``; returns the exit status."""
    streams = streams or Streams(sys.stdout, sys.stderr, sys.stdin)
    config = load_config()
    action = ns.queue_command
    try:
        if action == "list":
            return do_list(ns, config, streams)
        if action == "flush":
            return do_flush(ns, config, streams, send)
        if action == "show":
            return do_show(ns, config, streams)
        if action == "shape":
            return do_shape(ns, config, streams, clock)
        if action in admin.ACTIONS:
            return do_admin(action, ns, config, streams, send)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except sqlite3.Error as exc:
        return fail(streams, f"cannot read the queue: {exc}", EX_TEMPFAIL)
    except ControlError as exc:
        return fail(streams, str(exc), EX_TEMPFAIL)
    except QueueError as exc:
        return fail(streams, str(exc), EX_TEMPFAIL)
    raise MailcoreError(f"unknown queue action {action!r}")


# ---------------------------------------------------------------------------- list


def _queue_names(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    names = frozenset(name.strip() for value in values for name in value.split(",")
                      if name.strip())
    unknown = sorted(names - set(QUEUE_NAMES))
    if unknown:
        raise UsageError(f"unknown queue {unknown[0]!r} (expected {', '.join(QUEUE_NAMES)})")
    return names


def _counted(messages: Iterator[ListedMessage], progress: Progress
             ) -> Iterator[ListedMessage]:
    for msg in messages:
        progress.advance()
        yield msg


def do_list(ns: argparse.Namespace, config: Config, streams: Streams) -> int:
    filters = ListFilter(_queue_names(ns.queue), ns.sender, ns.recipient, ns.domain)
    # A listing that goes to a file or pipe shows its progress on the terminal; one that is
    # shown on the terminal is its own progress.
    tty = streams.tty if streams.tty is not None else (
        streams.err.isatty() and not streams.out.isatty())
    total = count_messages(config, filters.states()) if tty else None
    with Progress(streams.err, "listing", total, tty=tty) as progress:
        messages = iter_listing(config.get_path("queue_directory"), filters=filters)
        write_listing(_counted(messages, progress), streams.out, as_json=bool(ns.json),
                      empty_address=config.get("empty_address_recipient") or "MAILER-DAEMON")
    return EX_OK


# ---------------------------------------------------------------------------- flush


def do_flush(ns: argparse.Namespace, config: Config, streams: Streams, send: Send) -> int:
    if ns.queue_id is not None and ns.site is not None:
        raise UsageError("give a queue ID or --site, not both")
    socket_path = config.get_path("control_socket")
    try:
        if ns.site is not None:
            send(socket_path, "flush_site", site=ns.site)
        elif ns.queue_id is not None:
            if not send(socket_path, "flush_id", queue_id=ns.queue_id):
                warn(streams, f"{ns.queue_id}: no such message in the deferred queue")
        else:
            send(socket_path, "flush")
    except ServerNotRunning:
        return fail(streams, FLUSH_DOWN, EX_UNAVAILABLE)
    return EX_OK


# ---------------------------------------------------------------------------- show


def do_show(ns: argparse.Namespace, config: Config, streams: Streams) -> int:
    chosen = (ns.envelope, ns.headers, ns.body)
    sections = Sections(*chosen) if any(chosen) else Sections()
    db = queue_db(config)
    out: BinaryIO = streams.out.buffer if hasattr(streams.out, "buffer") else _TextSink(
        streams.out)
    status = EX_OK
    conn = open_reader(db) if db.exists() else None
    try:
        for queue_id in ns.queue_ids:
            streams.out.flush()
            if conn is None or not write_message(conn, queue_id, out, sections):
                warn(streams, f"{queue_id}: no such message in the queue")
                status = EX_NOINPUT
    finally:
        if conn is not None:
            conn.close()
    return status


class _TextSink:
    """Bytes written to a text stream (a StringIO in tests), decoded as UTF-8."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        return self._stream.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self._stream.flush()


# ---------------------------------------------------------------------------- shape


def _shape_states(names: list[str]) -> tuple[tuple[str, ...], bool]:
    """(queue states, whether maildrop is counted too)."""
    chosen: list[str] = []
    for name in names or ["incoming", "active"]:
        if name not in SHAPE_QUEUES:
            raise UsageError(f"unknown queue {name!r} (expected {', '.join(SHAPE_QUEUES)})")
        chosen += list(LISTED_STATES) if name == "all" else [name]
    states = tuple(s for s in LISTED_STATES if s in chosen)
    return states, MAILDROP in chosen


def do_shape(ns: argparse.Namespace, config: Config, streams: Streams,
             clock: Callable[[], float]) -> int:
    tty = streams.tty if streams.tty is not None else streams.out.isatty()
    top = ns.top if ns.top is not None else (20 if tty else 0)
    try:
        opts = ShapeOptions(buckets=ns.buckets, tick=ns.tick, linear=ns.linear,
                            senders=ns.senders, parents=ns.parents,
                            min_subdomains=ns.min_subdomains, width=max(80, ns.width),
                            top=top)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    states, maildrop = _shape_states(ns.queues)
    paths = queue_paths(config.get_path("queue_directory"))
    shape = Shape(opts)
    now = clock()
    sources: list[Iterable[ListedMessage]] = [iter_queue(paths.db, states=states)]
    if maildrop:
        sources.insert(0, iter_maildrop(paths.maildrop))
    for source in sources:
        for msg in source:
            shape.add(now - msg.arrival_time, msg.sender, [r.address for r in msg.recipients])
    streams.out.write(format_shape(shape))
    return EX_OK
