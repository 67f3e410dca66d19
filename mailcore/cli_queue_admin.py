"""``mailcore queue delete | hold | release | requeue``: Postfix's postsuper -d / -h / -H / -r.

Owns: these subcommands' arguments, reading queue IDs from the command line or stdin
(``-``), ``ALL``, and the choice of route: through the control channel when the server
answers, so the scheduler applies the action safely to mail it is delivering, else straight
to the queue database (one writer: a ``Queue`` opened here); the verbose and summary lines.

Must not: decide what an action does to a message (queue/admin.py, QueueManager); list,
flush, show or shape the queue (cli_queue.py).

Invariants: IDs are sent in batches of REQUEST_BATCH, so a million IDs never sit in one
request; when the first request finds no server, the IDs already taken from the input are
handed to the offline path, so none is lost; a server that stops mid-way is a failure, not a
switch to offline. Parameters read: control_socket, queue_directory, queue_group_commit.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from mailcore.cli_queue_io import EX_OK, PROG, Send, Streams, count_messages, queue_db, warn
from mailcore.config import Config
from mailcore.control import ControlError, ServerNotRunning
from mailcore.progress import Progress
from mailcore.queue import STATES, Queue, admin, open_reader
from mailcore.queueid import is_queue_id

ADMIN_TIMEOUT = 3600.0  # a delete waits for deliveries in flight, which have their own limits
REQUEST_BATCH = 1000
OPS = {admin.DELETE: "queue_delete", admin.HOLD_ACTION: "queue_hold",
       admin.RELEASE: "queue_release", admin.REQUEUE: "queue_requeue"}


def add_admin_parsers(actions: Any) -> None:
    """The postsuper subcommands: delete, hold, release, requeue."""
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
                warn(streams, f"invalid mail queue id: {queue_id}")


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
    db = queue_db(config)
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
        warn(streams, f'"{action} {admin.ALL}" will ignore other command line queue IDs')
    states = admin.source_states(action, ns.queue)
    total = count_messages(config, states) if everything else (
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
