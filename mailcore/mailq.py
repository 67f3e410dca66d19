"""mailq: the queue listing in Postfix's format (``mailq``, ``sendmail -bp``,
``mailcore queue list``) and in postqueue -j's JSON.

Owns: the listing's text layout (showq_compat's short-queue-ID layout: printf
"%-11s %7s %-20s %s" with the arrival time from asctime() cut to 20 characters, a deferral
reason right-aligned to column 78 whenever it changes, "(reason unavailable)" when a
recipient without a reason follows one with a reason, a blank line between messages, the
"-- N Kbytes in M Requests." summary), the JSON layout, the order of the listing:
maildrop, active, incoming, deferred, hold (corrupt messages only when asked for), each by
ID, and the listing filters (``ListFilter``: queue, sender, recipient, recipient domain).

Must not: write to the queue or to maildrop. The queue is read through a read-only SQLite
connection one page at a time (each page one read transaction), so the listing works with
the server running or stopped and starts printing at once for any queue size.

Invariants: formatting functions are pure; only pending recipients (not yet done) are shown,
those with a deferral reason first, as showq lists its defer log before the queue file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mailcore import maildrop
from mailcore.queue import ACTIVE, CORRUPT, DEFERRED, HOLD, INCOMING, open_reader, queue_paths

LISTED_STATES: tuple[str, ...] = (ACTIVE, INCOMING, DEFERRED, HOLD)
MAILDROP = "maildrop"
QUEUE_NAMES: tuple[str, ...] = (MAILDROP, *LISTED_STATES, CORRUPT)  # what --queue accepts
_STATUS_MARK = {ACTIVE: "*", HOLD: "!"}


@dataclass(frozen=True)
class ListedRecipient:
    address: str
    reason: str = ""  # why delivery was deferred; "" when unknown or not deferred


@dataclass(frozen=True)
class ListedMessage:
    queue_name: str  # maildrop, active, incoming, deferred, hold
    queue_id: str
    arrival_time: float
    size: int
    sender: str
    recipients: tuple[ListedRecipient, ...]
    force_expired: bool = False


def _address_key(address: str) -> str:
    """Addresses compare without case; the null sender is spelled "", "<>" or
    "MAILER-DAEMON" on the command line."""
    folded = address.strip().lower()
    if folded.startswith("<") and folded.endswith(">"):
        folded = folded[1:-1]
    return "" if folded == "mailer-daemon" else folded


def _in_domain(address: str, domain: str) -> bool:
    host = address.rpartition("@")[2].lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


@dataclass(frozen=True)
class ListFilter:
    """Which messages a listing shows; None means "any". A message must match every filter
    given. ``recipient`` and ``domain`` look at pending recipients only (the ones listed);
    ``domain`` matches the domain and its subdomains."""

    queues: frozenset[str] | None = None  # from QUEUE_NAMES
    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.queues or ()) - set(QUEUE_NAMES))
        if unknown:
            raise ValueError(f"unknown queue name {unknown[0]!r} (expected one of "
                             f"{', '.join(QUEUE_NAMES)})")

    def states(self) -> tuple[str, ...]:
        """The queue states to read, in listing order."""
        if self.queues is None:
            return LISTED_STATES
        return tuple(s for s in (*LISTED_STATES, CORRUPT) if s in self.queues)

    def wants_maildrop(self) -> bool:
        return self.queues is None or MAILDROP in self.queues

    def matches(self, msg: ListedMessage) -> bool:
        if self.sender is not None and _address_key(msg.sender) != _address_key(self.sender):
            return False
        if self.recipient is not None:
            wanted = _address_key(self.recipient)
            if not any(_address_key(r.address) == wanted for r in msg.recipients):
                return False
        if self.domain is not None:
            domain = self.domain.lower().strip().rstrip(".").lstrip("@")
            if not any(_in_domain(r.address, domain) for r in msg.recipients):
                return False
        return True


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _line(a: str, b: str, c: str, d: str) -> str:
    return f"{a:<11} {b:>7} {c:<20} {d}\n"


HEADING = _line("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")


def format_message(msg: ListedMessage, *, empty_address: str = "MAILER-DAEMON",
                   localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    """One message: the sender line, then reason lines and recipient lines."""
    queue_id = msg.queue_id + _STATUS_MARK.get(msg.queue_name, "")
    if msg.force_expired:
        queue_id += "#"
    arrival = time.asctime(localtime(msg.arrival_time))[:20]
    sender = _printable(msg.sender or empty_address)
    out = [f"{queue_id:<11} {msg.size:>7} {arrival:>20} {sender}\n"]
    saved = ""
    for rcpt in msg.recipients:
        if rcpt.reason != saved:
            saved = rcpt.reason
            shown = _printable(saved) if saved else "reason unavailable"
            out.append(" " * max(76 - len(shown), 0) + f"({shown})\n")
        out.append(_line("", "", "", _printable(rcpt.address)))
    return "".join(out)


def format_summary(total_size: int, count: int) -> str:
    if count == 0:
        return "Mail queue is empty\n"
    return f"\n-- {total_size // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.\n"


def format_json(msg: ListedMessage, *, empty_address: str = "MAILER-DAEMON") -> str:
    """postqueue -j: one JSON object per message, on one line."""
    recipients = []
    for rcpt in msg.recipients:
        item = {"address": rcpt.address}
        if rcpt.reason:
            item["delay_reason"] = rcpt.reason
        recipients.append(item)
    record = {
        "queue_name": msg.queue_name,
        "queue_id": msg.queue_id,
        "arrival_time": int(msg.arrival_time),
        "message_size": msg.size,
        "force_expired": msg.force_expired,
        "sender": msg.sender or empty_address,
        "recipients": recipients,
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_listing(messages: Iterable[ListedMessage], out: TextIO, *, as_json: bool = False,
                  empty_address: str = "MAILER-DAEMON",
                  localtime: Callable[[float], time.struct_time] = time.localtime) -> int:
    """Print the listing as messages arrive (flushing after each); returns the count."""
    count = total = 0
    for msg in messages:
        if as_json:
            out.write(format_json(msg, empty_address=empty_address))
        else:
            out.write(HEADING if count == 0 else "\n")
            out.write(format_message(msg, empty_address=empty_address, localtime=localtime))
        out.flush()
        count += 1
        total += msg.size
    if not as_json:
        out.write(format_summary(total, count))
        out.flush()
    return count


# ------------------------------------------------------------------------------ sources


def _pending(rows: list[tuple[str, str, str | None]]) -> tuple[ListedRecipient, ...]:
    """Recipients with a deferral reason first, then the others, each in queue order."""
    listed = [ListedRecipient(address, (reason or "") if status == "deferred" else "")
              for address, status, reason in rows]
    return tuple([r for r in listed if r.reason] + [r for r in listed if not r.reason])


def _page(conn: sqlite3.Connection, state: str, after: str, size: int) -> list[ListedMessage]:
    conn.execute("BEGIN")
    try:
        messages = conn.execute(
            "SELECT queue_id, sender, size, arrival_time FROM messages"
            " WHERE state = ? AND queue_id > ? ORDER BY queue_id LIMIT ?",
            (state, after, size),
        ).fetchall()
        if not messages:
            return []
        last = messages[-1][0]
        rows = conn.execute(
            "SELECT r.queue_id, r.address, r.status, r.reason FROM recipients r"
            " JOIN messages m ON m.queue_id = r.queue_id"
            " WHERE m.state = ? AND r.queue_id > ? AND r.queue_id <= ? AND r.done = 0"
            " ORDER BY r.queue_id, r.seq",
            (state, after, last),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    by_id: dict[str, list[tuple[str, str, str | None]]] = {}
    for queue_id, address, status, reason in rows:
        by_id.setdefault(queue_id, []).append((address, status, reason))
    return [
        ListedMessage(state, queue_id, arrival, size, sender, _pending(by_id.get(queue_id, [])))
        for queue_id, sender, size, arrival in messages
    ]


def iter_queue(db_path: Path, *, page: int = 500,
               states: tuple[str, ...] = LISTED_STATES) -> Iterator[ListedMessage]:
    """Queued messages in ``states``, in listing order, read ``page`` at a time; nothing
    when the queue database does not exist yet."""
    if not db_path.exists():
        return
    conn = open_reader(db_path)
    conn.row_factory = None
    try:
        for state in states:
            after = ""
            while batch := _page(conn, state, after, page):
                yield from batch
                after = batch[-1].queue_id
    finally:
        conn.close()


def iter_maildrop(maildrop_dir: Path) -> Iterator[ListedMessage]:
    """Messages waiting in maildrop for pickup (unreadable or damaged files are skipped)."""
    for path in maildrop.oldest(maildrop_dir, 1_000_000):
        try:
            drop = maildrop.open_drop(path)
        except (OSError, maildrop.MaildropCorrupt):
            continue
        env = drop.envelope
        yield ListedMessage(
            MAILDROP, drop.name, env.arrival_time, drop.content_size, env.sender,
            tuple(ListedRecipient(r.address) for r in env.recipients),
        )


def iter_listing(queue_directory: Path, *, page: int = 500,
                 filters: ListFilter | None = None) -> Iterator[ListedMessage]:
    """The listing: maildrop first, then the queue, as showq orders it; only messages that
    pass ``filters`` when given."""
    paths = queue_paths(queue_directory)
    chosen = filters or ListFilter()
    if chosen.wants_maildrop():
        yield from filter(chosen.matches, iter_maildrop(paths.maildrop))
    yield from filter(chosen.matches, iter_queue(paths.db, page=page, states=chosen.states()))
