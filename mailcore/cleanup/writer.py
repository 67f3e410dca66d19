"""cleanup: turns a received message into its queued form and enqueues it.

Owns: streaming a message to a spool file while it arrives (so a 50 MB message is never held
in memory), the Received header, header validation and completion as Postfix's cleanup(8)
does (Message-ID, Date, From and their Resent- forms for local submission; Bcc removed from
local submission), header_size_limit, hopcount_limit, message_size_limit while receiving, and
handing the finished message to the queue.

Must not: decide routing or speak SMTP. Rejections come back as ``CleanupReject`` carrying a
reply code and enhanced status for the caller to send.

Invariants: stored lines end in LF (delivery agents add CR where their protocol needs it);
headers are buffered only up to header_size_limit each; a spool file is removed on every path
that does not enqueue it. Parameters: myhostname, mail_name, header_size_limit,
hopcount_limit, message_size_limit, always_add_missing_headers.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.model import ClientInfo, Envelope
from mailcore.queue import NewMessage, NewRecipient, Queue

_HEADER_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


class CleanupReject(Exception):
    """The message cannot be accepted; the caller replies ``code dsn text``."""

    def __init__(self, code: int, dsn: str, text: str):
        super().__init__(f"{code} {dsn} {text}")
        self.code, self.dsn, self.text = code, dsn, text


@dataclass(frozen=True)
class CleanupSettings:
    myhostname: str
    mail_name: str = "mailcore"
    header_size_limit: int = 102400
    hopcount_limit: int = 50
    message_size_limit: int = 10240000  # 0 = unlimited
    always_add_missing_headers: bool = False


@dataclass(frozen=True)
class CleanedMessage:
    spool_path: Path
    size: int
    message_id: str | None
    received_count: int


class MessageWriter:
    """One message on its way to the spool: feed lines, then ``finish`` (or ``abort``)."""

    def __init__(self, settings: CleanupSettings, spool_path: Path, *, queue_id: str,
                 sender: str, local_submission: bool, first_headers: list[bytes],
                 full_name: str = ""):
        self._settings = settings
        self.spool_path = spool_path
        self._queue_id = queue_id
        self._sender = sender
        self._local = local_submission
        self._full_name = full_name
        fd = os.open(spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO = os.fdopen(fd, "wb", buffering=256 * 1024)
        self._size = 0
        self.too_big = False
        # A refusal found mid-stream waits for the end of DATA: the client is still sending.
        self._rejected: CleanupReject | None = None
        self._in_headers = True
        self._headers: list[list[bytes]] = []  # each header: its physical lines
        self._header_bytes = 0
        self._truncated_header = False
        for line in first_headers:
            # Our own Received header counts toward hopcount_limit, as in Postfix.
            self._header_line(line)

    # --- receiving --------------------------------------------------------------------
    def write_line(self, line: bytes) -> None:
        """One message line, dot-unstuffed, without its line terminator."""
        self._size += len(line) + 2  # counted as received (CRLF), like SIZE=
        limit = self._settings.message_size_limit
        if limit and self._size > limit:
            self.too_big = True
        if self.too_big or self._rejected:
            return  # keep reading to the end of DATA, store nothing more
        if self._in_headers:
            self._header_line(line)
        else:
            self._write(line)

    def _header_line(self, line: bytes) -> None:
        if line[:1] in (b" ", b"\t") and self._headers:
            self._header_bytes += len(line)
            if self._header_bytes <= self._settings.header_size_limit:
                self._headers[-1].append(line)
            return
        if _HEADER_NAME.match(line):
            self._header_bytes = len(line)
            self._headers.append([line[: self._settings.header_size_limit]])
            return
        self._end_headers()
        if line:
            # A non-header line ends the header section; keep the blank separator RFC 5322 needs.
            self._write(b"")
            self._write(line)
        else:
            self._write(b"")

    def _end_headers(self) -> None:
        self._in_headers = False
        settings = self._settings
        received = sum(1 for h in self._headers if _name(h[0]) == "received")
        if received >= settings.hopcount_limit:
            self._rejected = CleanupReject(554, "5.4.6", "Too many hops")
            return
        for header in self._completed_headers():
            for physical in header:
                self._write(physical)

    def _completed_headers(self) -> list[list[bytes]]:
        headers = [h for h in self._headers if not (self._local and _name(h[0]) == "bcc")]
        if not (self._local or self._settings.always_add_missing_headers):
            return headers
        present = {_name(h[0]) for h in headers}
        resent = any(name.startswith("resent-") for name in present)
        prefix = "resent-" if resent else ""
        added: list[list[bytes]] = []
        if prefix + "message-id" not in present:
            added.append([self._header(prefix, "Message-ID", f"<{self._message_id_text()}>")])
        if prefix + "date" not in present:
            added.append([self._header(prefix, "Date", email.utils.formatdate(localtime=True))])
        if prefix + "from" not in present:
            added.append([self._header(prefix, "From", self._from_text())])
        return headers + added

    def _header(self, prefix: str, name: str, value: str) -> bytes:
        label = ("Resent-" if prefix else "") + name
        return f"{label}: {value}".encode()

    def _message_id_text(self) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return f"{stamp}.{self._queue_id}@{self._settings.myhostname}"

    def _from_text(self) -> str:
        sender = self._sender or "MAILER-DAEMON"
        if self._full_name:
            return email.utils.formataddr((self._full_name, sender))
        return sender

    def _write(self, line: bytes) -> None:
        self._file.write(line)
        self._file.write(b"\n")

    # --- ending ---------------------------------------------------------------------------
    def finish(self) -> CleanedMessage:
        """Close the spool file; raise CleanupReject for a message that must be refused."""
        if self.too_big:
            self.abort()
            raise CleanupReject(552, "5.3.4", "Message size exceeds fixed limit")
        if self._in_headers:
            self._end_headers()
        if self._rejected:
            self.abort()
            raise self._rejected
        self._file.close()
        message_id = self._find_message_id()
        received = sum(1 for h in self._headers if _name(h[0]) == "received")
        return CleanedMessage(self.spool_path, self.spool_path.stat().st_size, message_id,
                              received)

    def _find_message_id(self) -> str | None:
        for header in self._headers:
            if _name(header[0]) == "message-id":
                value = b" ".join(part.strip() for part in header)
                return value.split(b":", 1)[1].strip().decode("utf-8", "replace").strip("<>")
        if self._local:
            return self._message_id_text()
        return None

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.spool_path.unlink(missing_ok=True)


def _name(first_line: bytes) -> str:
    match = _HEADER_NAME.match(first_line)
    return match.group(1).decode("ascii").lower() if match else ""


def received_header(
    *, client: ClientInfo, myhostname: str, mail_name: str, queue_id: str,
    recipients: list[str], when: float | None = None, local_uid: int | None = None,
) -> list[bytes]:
    """Postfix's Received header as physical lines (remote: from/by/with/id/for)."""
    date = email.utils.formatdate(when, localtime=True)
    if local_uid is not None:
        return [
            f"Received: by {myhostname} ({mail_name}, from userid {local_uid})".encode(),
            f"\tid {queue_id}; {date}".encode(),
        ]
    helo = client.helo or client.name
    lines = [
        f"Received: from {helo} ({client.name} [{client.address}])",
        f"\tby {myhostname} ({mail_name}) with {client.protocol} id {queue_id}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return [line.encode("utf-8", "surrogateescape") for line in lines]


def envelope_attrs(envelope: Envelope) -> dict[str, str]:
    """Named attributes stored with the message (shown by `mailcore queue show`)."""
    client = envelope.client
    attrs = {
        "client_address": client.address,
        "client_name": client.name,
        "reverse_client_name": client.reverse_name,
        "helo_name": client.helo,
        "protocol_name": client.protocol,
        "rewrite_context": "local" if envelope.local_submission else "remote",
    }
    if client.sasl_user:
        attrs["sasl_username"] = client.sasl_user
    if envelope.body_type:
        attrs["body_type"] = envelope.body_type
    if envelope.smtputf8:
        attrs["smtputf8"] = "yes"
    attrs.update(dict(envelope.attrs))
    return {k: v for k, v in attrs.items() if v}


def cleanup_settings(config: Config) -> CleanupSettings:
    return CleanupSettings(
        myhostname=config.get("myhostname"),
        mail_name=config.get("mail_name"),
        header_size_limit=config.get_size("header_size_limit"),
        hopcount_limit=config.get_int("hopcount_limit"),
        message_size_limit=config.get_size("message_size_limit"),
        always_add_missing_headers=config.get_bool("always_add_missing_headers"),
    )


class Cleanup:
    """The cleanup service of one server: opens spool files and enqueues finished messages."""

    def __init__(self, settings: CleanupSettings, queue: Queue, log: MailLog, spool_dir: Path):
        self.settings = settings
        self._queue = queue
        self._log = log
        self._spool_dir = spool_dir

    def new_queue_id(self) -> str:
        return self._queue.new_queue_id()

    def open(self, *, queue_id: str, sender: str, local_submission: bool,
             first_headers: list[bytes], full_name: str = "") -> MessageWriter:
        return MessageWriter(
            self.settings, self._spool_dir / f"{queue_id}.tmp", queue_id=queue_id,
            sender=sender, local_submission=local_submission, first_headers=first_headers,
            full_name=full_name,
        )

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str:
        """Finish the writer and commit the message durably; only then may the caller say 250.

        Raises CleanupReject for a refused message and the queue's QueueWriteError /
        QueueFullError when the commit fails; the spool file is gone on every path."""
        cleaned = writer.finish()
        try:
            message = NewMessage(
                sender=envelope.sender,
                recipients=tuple(
                    NewRecipient(r.address, r.orig_rcpt, r.notify, r.orcpt)
                    for r in envelope.recipients
                ),
                content_path=cleaned.spool_path,
                content=None,
                size=cleaned.size,
                arrival_time=envelope.arrival_time,
                envid=envelope.envid,
                ret=envelope.ret,
                attrs=envelope_attrs(envelope),
                queue_id=queue_id,
            )
            await self._queue.enqueue(message)
        finally:
            cleaned.spool_path.unlink(missing_ok=True)
        if cleaned.message_id:
            self._log.info("cleanup", f"{queue_id}: message-id=<{cleaned.message_id}>")
        self._log.info(
            "qmgr",
            f"{queue_id}: from=<{envelope.sender}>, size={cleaned.size}, "
            f"nrcpt={len(envelope.recipients)} (queue active)",
        )
        return queue_id
