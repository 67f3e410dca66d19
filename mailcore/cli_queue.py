"""``mailcore queue …``: Postfix's postqueue, postsuper, postcat and qshape as subcommands.

Owns: the subcommands' arguments and their output — list (mailq, with filters and --json),
flush (postqueue -f / -s / -i), show (postcat -q), delete / hold / release / requeue
(postsuper -d / -h / -H / -r) and shape (qshape) — and the choice between the running server
and the queue database: flush always needs the server ("mail system is down" otherwise);
postsuper's actions go through the control channel when the server answers, so the
scheduler applies them safely to mail it is delivering, and straight to the database (one
writer: a ``Queue`` opened here) when it does not.

Must not: format listings (mailq.py), envelopes (postcat.py) or tables (qshape.py); decide
what an administrative action does to a message (queue/admin.py, QueueManager).

Invariants: listings and shape stream the queue a page at a time; queue IDs given on the
command line or on stdin (``-``) are sent in batches, so a million IDs never sit in one
request; progress goes to stderr only when it is a terminal; every failure is one line
``mailcore queue: fatal: …`` and an exit status from sysexits.h.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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
from mailcore.queue import STATES, Queue, QueueError, admin, open_reader, queue_paths
from mailcore.queueid import is_queue_id

PROG = "mailcore queue"
EX_OK, EX_USAGE, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE, EX_TEMPFAIL = 0, 64, 66, 69, 70, 75
FLUSH_DOWN = "Cannot flush mail queue - mail system is down"
ADMIN_TIMEOUT = 3600.0  # a delete waits for deliveries in flight, which have their own limits
REQUEST_BATCH = 1000
OPS = {admin.DELETE: "queue_delete", admin.HOLD_ACTION: "queue_hold",
       admin.RELEASE: "queue_release", admin.REQUEUE: "queue_requeue"}
SHAPE_QUEUES = ("incoming", "active", "deferred", "hold", MAILDROP, "all")

Send = Callable[..., object]  # request_sync's signature: (socket_path, op, timeout=, **args)


@dataclass
class Streams:
    """Where a command reads and writes; tests pass their own (and force the tty flag)."""

    out: TextIO
    err: TextIO
    stdin: TextIO
    tty: bool | None = None  # None: ask stderr


def _fail(streams: Streams, message: str, status: int) -> int:
    print(f"{PROG}: fatal: {message}", file=streams.err)
    return status


def _warn(streams: Streams, message: str) -> None:
    print(f"{PROG}: warning: {message}", file=streams.err)


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
    for action, text in ((admin.DELETE, "delete messages (postsuper -d)"),
                         (admin.HOLD_ACTION, "put messages on hold (postsuper -h)"),
                         (admin.RELEASE, "release held messages (postsuper -H)"),
                         (admin.REQUEUE, "requeue messages (postsuper -r)")):
        p = actions.add_parser(action, help=text)
        p.add_argument("queue_ids", nargs="+", metavar="ID",
                       help="queue IDs, ALL (upper case) for every message, - to read IDs "
                       "from standard input")
        p.add_argument("--queue", choices=STATES, help="only messages in this queue")
        p.add_argument("-v", "--verbose", action="store_true", help="report each message")
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
        return _fail(streams, f"cannot read the queue: {exc}", EX_TEMPFAIL)
    except ControlError as exc:
        return _fail(streams, str(exc), EX_TEMPFAIL)
    except QueueError as exc:
        return _fail(streams, str(exc), EX_TEMPFAIL)
    raise MailcoreError(f"unknown queue action {action!r}")


def _db(config: Config) -> Path:
    return queue_paths(config.get_path("queue_directory")).db


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


def _count(config: Config, states: Iterable[str]) -> int | None:
    db = _db(config)
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
    total = _count(config, filters.states()) if tty else None
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
                _warn(streams, f"{ns.queue_id}: no such message in the deferred queue")
        else:
            send(socket_path, "flush")
    except ServerNotRunning:
        return _fail(streams, FLUSH_DOWN, EX_UNAVAILABLE)
    return EX_OK


# ---------------------------------------------------------------------------- show


def do_show(ns: argparse.Namespace, config: Config, streams: Streams) -> int:
    chosen = (ns.envelope, ns.headers, ns.body)
    sections = Sections(*chosen) if any(chosen) else Sections()
    db = _db(config)
    out: BinaryIO = streams.out.buffer if hasattr(streams.out, "buffer") else _TextSink(
        streams.out)
    status = EX_OK
    conn = open_reader(db) if db.exists() else None
    try:
        for queue_id in ns.queue_ids:
            streams.out.flush()
            if conn is None or not write_message(conn, queue_id, out, sections):
                _warn(streams, f"{queue_id}: no such message in the queue")
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


# ---------------------------------------------------------------------------- postsuper


def _ids_from(words: list[str], streams: Streams) -> Iterator[str]:
    """Queue IDs in order; "-" reads them from stdin, one per line. Words that are not
    queue IDs are skipped with postsuper's warning."""
    for word in words:
        lines: Iterable[str] = (line.strip() for line in streams.stdin) if word == "-" \
            else (word,)
        for queue_id in lines:
            if not queue_id:
                continue
            if is_queue_id(queue_id):
                yield queue_id
            else:
                _warn(streams, f"invalid mail queue id: {queue_id}")


def _chunks(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for queue_id in ids:
        chunk.append(queue_id)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _all_ids(config: Config, states: frozenset[str]) -> Iterator[str]:
    """Every queue ID in ``states`` from a read-only connection, a page at a time."""
    db = _db(config)
    if not db.exists() or not states:
        return
    chosen = sorted(states)
    marks = ", ".join("?" * len(chosen))
    conn = open_reader(db)
    try:
        after = ""
        while rows := conn.execute(
                f"SELECT queue_id FROM messages WHERE state IN ({marks}) AND queue_id > ?"
                " ORDER BY queue_id LIMIT ?", (*chosen, after, admin.BATCH)).fetchall():
            yield from (row[0] for row in rows)
            after = rows[-1][0]
    finally:
        conn.close()


def do_admin(action: str, ns: argparse.Namespace, config: Config, streams: Streams,
             send: Send) -> int:
    words = list(ns.queue_ids)
    everything = admin.ALL in words
    if everything and len(words) > 1:
        _warn(streams, f'"{action} {admin.ALL}" will ignore other command line queue IDs')
    states = admin.source_states(action, ns.queue)
    total = _count(config, states) if everything else (
        None if "-" in words else len(words))
    with Progress(streams.err, _PROGRESS_LABEL[action], total, tty=streams.tty) as progress:
        try:
            result = _admin_online(action, ns.queue, config, streams, send, everything,
                                   words, progress)
        except ServerNotRunning as exc:
            ids: Iterable[str] | str = (
                exc.ids if isinstance(exc, _Restart)
                else admin.ALL if everything else _ids_from(words, streams))
            result = asyncio.run(_admin_offline(action, ids, ns.queue, config, progress))
    if ns.verbose:
        for queue_id in result.changed:
            print(f"{PROG}: {queue_id}: {admin.LOGGED[action]}", file=streams.err)
        for queue_id in result.missing:
            print(f"{PROG}: {queue_id}: not found", file=streams.err)
    line = admin.report_line(action, len(result.changed))
    if line:
        print(f"{PROG}: {line}", file=streams.err)
    return EX_OK


_PROGRESS_LABEL = {admin.DELETE: "deleting", admin.HOLD_ACTION: "holding",
                   admin.RELEASE: "releasing", admin.REQUEUE: "requeueing"}


def _admin_online(action: str, queue: str | None, config: Config, streams: Streams,
                  send: Send, everything: bool, words: list[str], progress: Progress
                  ) -> admin.AdminResult:
    """Through the control channel, a batch per request. ServerNotRunning escapes only
    when the very first request finds no server (the caller then works offline)."""
    socket_path = config.get_path("control_socket")
    if everything:
        # Probe first, so that a stopped server is noticed before the queue is read.
        send(socket_path, OPS[action], timeout=ADMIN_TIMEOUT, ids=[], queue=queue)
        ids: Iterable[str] = _all_ids(config, admin.source_states(action, queue))
    else:
        ids = _ids_from(words, streams)
    changed: list[str] = []
    missing: list[str] = []
    first = True
    for chunk in _chunks(ids, REQUEST_BATCH):
        try:
            reply = send(socket_path, OPS[action], timeout=ADMIN_TIMEOUT, ids=chunk,
                         queue=queue)
        except ServerNotRunning:
            if first and not everything:
                raise _Restart(chunk, ids) from None
            raise ControlError("the mail system stopped during the operation") from None
        first = False
        part = _reply(reply)
        changed += part.changed
        missing += part.missing
        progress.advance(len(chunk))
    return admin.AdminResult(tuple(changed), tuple(missing))


def _reply(reply: object) -> admin.AdminResult:
    if not isinstance(reply, dict) or not isinstance(reply.get("changed"), list) \
            or not isinstance(reply.get("missing"), list):
        raise ControlError("malformed answer from the mail system")
    return admin.AdminResult(tuple(map(str, reply["changed"])), tuple(map(str, reply["missing"])))


class _Restart(ServerNotRunning):
    """No server: carries the IDs already taken from the input, so none is lost."""

    def __init__(self, chunk: list[str], rest: Iterable[str]) -> None:
        super().__init__("the mail system is not running")
        self.ids = _chain(chunk, rest)


def _chain(first: list[str], rest: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from rest


async def _admin_offline(action: str, ids: Iterable[str] | str, queue_name: str | None,
                         config: Config, progress: Progress) -> admin.AdminResult:
    queue = await Queue.open(config.get_path("queue_directory"),
                             group_commit=config.get_bool("queue_group_commit"))
    try:
        return await admin.administer_offline(queue, action, ids, queue_name,
                                              progress=progress.update)
    finally:
        await queue.close()
