"""postcat -q for the SQLite queue: one message's envelope and content, for ``mailcore queue
show ID``.

Owns: the layout, modelled on postcat's: ``*** ENVELOPE RECORDS state/ID ***`` with one
``name: value`` line per record (postcat's record names: message_size, message_arrival_time,
create_time, named_attribute, sender, original_recipient, dsn_orig_rcpt, dsn_notify_flags,
recipient or done_recipient), then ``*** MESSAGE CONTENTS state/ID ***`` and the content,
then ``*** MESSAGE FILE END state/ID ***``. mailcore keeps more per recipient than a Postfix
queue file, and shows it in records of its own: ``recipient_status`` (status, enhanced
code, relay, reason) after each recipient that has one, and ``next_attempt_time`` and
``delivery_attempts`` for mail that has been tried. DSN ENVID and RET are shown as the named
attributes dsn_envid and dsn_ret, as Postfix stores them.

Must not: write to the queue. Reads go through a read-only connection; the content is read
one chunk at a time (one query each), so a large message is never held in memory.

Invariants: formatting is pure (``format_envelope``, ``ContentSplitter``); the header/body
split follows postcat -h/-b: the header ends at the first line that is neither a header
field nor a continuation, and that line (normally the empty separator) starts the body.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mailcore.queue import QueuedMessage, QueuedRecipient, QueueReadError

_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_MESSAGE_SQL = (
    "SELECT queue_id, state, sender, size, content_size, arrival_time, create_time, envid,"
    " ret, attrs, next_attempt, last_attempt, attempt_count, warned_delay"
    " FROM messages WHERE queue_id = ?"
)
_RECIPIENT_SQL = (
    "SELECT seq, address, orig_rcpt, notify, orcpt, status, dsn_status, reason, relay, done,"
    " notified FROM recipients WHERE queue_id = ? ORDER BY seq"
)


@dataclass(frozen=True)
class Sections:
    """What to show: postcat's -e, -h and -b."""

    envelope: bool = True
    headers: bool = True
    body: bool = True


def _attrs(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def load_message(conn: sqlite3.Connection, queue_id: str) -> QueuedMessage | None:
    """The message's envelope from one read transaction; None when it is not queued."""
    conn.execute("BEGIN")
    try:
        row = conn.execute(_MESSAGE_SQL, (queue_id,)).fetchone()
        rows = conn.execute(_RECIPIENT_SQL, (queue_id,)).fetchall() if row else []
    finally:
        conn.execute("COMMIT")
    if row is None:
        return None
    recipients = tuple(
        QueuedRecipient(seq=r[0], address=r[1], orig_rcpt=r[2], notify=r[3], orcpt=r[4],
                        status=r[5], dsn_status=r[6], reason=r[7], relay=r[8],
                        done=bool(r[9]), notified=bool(r[10]))
        for r in rows)
    return QueuedMessage(
        queue_id=row[0], state=row[1], sender=row[2], recipients=recipients, size=row[3],
        content_size=row[4], arrival_time=row[5], create_time=row[6], envid=row[7],
        ret=row[8], attrs=_attrs(row[9]), next_attempt=row[10], last_attempt=row[11],
        attempt_count=row[12], warned_delay=bool(row[13]))


def iter_content(conn: sqlite3.Connection, queue_id: str) -> Iterator[bytes]:
    """The content chunk by chunk; QueueReadError when the message goes away meanwhile."""
    row = conn.execute("SELECT content_chunks FROM messages WHERE queue_id = ?",
                       (queue_id,)).fetchone()
    if row is None:
        raise QueueReadError(f"{queue_id}: no such message in the queue")
    for seq in range(int(row[0])):
        chunk = conn.execute("SELECT data FROM content WHERE queue_id = ? AND seq = ?",
                             (queue_id, seq)).fetchone()
        if chunk is None:
            raise QueueReadError(f"{queue_id}: the message was removed while it was read")
        yield bytes(chunk[0])


def _when(seconds: float, localtime: Callable[[float], time.struct_time]) -> str:
    return time.asctime(localtime(seconds))


def _recipient_lines(rcpt: QueuedRecipient) -> list[str]:
    lines = []
    if rcpt.orig_rcpt:
        lines.append(f"original_recipient: {rcpt.orig_rcpt}")
    if rcpt.orcpt:
        lines.append(f"dsn_orig_rcpt: {rcpt.orcpt}")
    if rcpt.notify:
        lines.append(f"dsn_notify_flags: {rcpt.notify}")
    lines.append(f"{'done_recipient' if rcpt.done else 'recipient'}: {rcpt.address}")
    if rcpt.status != "pending" or rcpt.reason:
        status = [rcpt.status]
        if rcpt.dsn_status:
            status.append(rcpt.dsn_status)
        if rcpt.relay:
            status.append(f"relay={rcpt.relay}")
        if rcpt.reason:
            status.append(f"({rcpt.reason})")
        lines.append("recipient_status: " + " ".join(status))
    return lines


def format_envelope(msg: QueuedMessage, *,
                    localtime: Callable[[float], time.struct_time] = time.localtime) -> str:
    name = f"{msg.state}/{msg.queue_id}"
    lines = [
        f"*** ENVELOPE RECORDS {name} ***",
        f"message_size: {msg.size:>15} {msg.content_size:>15} {len(msg.recipients):>15}",
        f"message_arrival_time: {_when(msg.arrival_time, localtime)}",
        f"create_time: {_when(msg.create_time, localtime)}",
    ]
    attrs = dict(msg.attrs)
    if msg.envid:
        attrs["dsn_envid"] = msg.envid
    if msg.ret:
        attrs["dsn_ret"] = msg.ret
    lines += [f"named_attribute: {key}={attrs[key]}" for key in sorted(attrs)]
    lines.append(f"sender: {msg.sender}")
    for rcpt in msg.recipients:
        lines += _recipient_lines(rcpt)
    if msg.attempt_count:
        lines.append(f"delivery_attempts: {msg.attempt_count}")
    if msg.next_attempt is not None:
        lines.append(f"next_attempt_time: {_when(msg.next_attempt, localtime)}")
    return "".join(line + "\n" for line in lines)


class ContentSplitter:
    """Feeds content chunks, returns the part of each to print for the chosen sections."""

    def __init__(self, headers: bool, body: bool) -> None:
        self._show = {True: headers, False: body}  # in_header -> shown
        self._in_header = True
        self._partial = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._partial + chunk
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return self._lines(data[:cut])

    def end(self) -> bytes:
        rest, self._partial = self._partial, b""
        return self._lines(rest)

    def _lines(self, data: bytes) -> bytes:
        if not self._in_header:
            return data if self._show[False] else b""
        out = bytearray()
        for line in data.splitlines(keepends=True):
            if self._in_header and not _is_header_line(line):
                self._in_header = False
            if self._show[self._in_header]:
                out += line
        return bytes(out)


def _is_header_line(line: bytes) -> bool:
    """A header field, or the continuation of one (folded, not blank)."""
    if _HEADER_FIELD.match(line):
        return True
    return line[:1] in (b" ", b"\t") and bool(line.strip())


def write_message(conn: sqlite3.Connection, queue_id: str, out: BinaryIO,
                  sections: Sections = Sections(), *,
                  localtime: Callable[[float], time.struct_time] = time.localtime) -> bool:
    """postcat -q: False when no such message is queued."""
    msg = load_message(conn, queue_id)
    if msg is None:
        return False
    name = f"{msg.state}/{msg.queue_id}"
    if sections.envelope:
        out.write(format_envelope(msg, localtime=localtime).encode("utf-8", "replace"))
    if sections.headers or sections.body:
        out.write(f"*** MESSAGE CONTENTS {name} ***\n".encode())
        splitter = ContentSplitter(sections.headers, sections.body)
        last = b"\n"
        for chunk in iter_content(conn, queue_id):
            shown = splitter.feed(chunk)
            out.write(shown)
            last = shown[-1:] or last
        shown = splitter.end()
        out.write(shown)
        if (shown[-1:] or last) != b"\n":
            out.write(b"\n")  # the end marker always starts a line of its own
    out.write(f"*** MESSAGE FILE END {name} ***\n".encode())
    out.flush()
    return True
