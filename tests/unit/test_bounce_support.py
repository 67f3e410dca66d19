"""Shared builders for the bounce tests: queued messages and recipients, and a parser that
splits a notice into its three RFC 3464 parts with Python's email package."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage, Message

from mailcore.bounce import BounceSettings
from mailcore.queue.types import QueuedMessage, QueuedRecipient

ARRIVAL = 1_700_000_000.0
NOW = ARRIVAL + 3600.0
ORIGINAL = (
    b"Received: from client.example (client.example [192.0.2.9])\n"
    b"\tby mx.example.org (mailcore) with ESMTP id ABC123\n"
    b"From: Alice <alice@example.org>\n"
    b"To: bob@remote.example\n"
    b"Subject: quarterly numbers\n"
    b"Message-ID: <orig.1@example.org>\n"
    b"\n"
    b"first body line\n"
    b"second body line\n"
)


def settings(**overrides: object) -> BounceSettings:
    values: dict[str, object] = {"myhostname": "mx.example.org", "myorigin": "example.org"}
    values.update(overrides)
    return BounceSettings(**values)  # type: ignore[arg-type]


def rcpt(seq: int = 1, address: str = "bob@remote.example", *, orig: str | None = None,
         notify: str | None = None, orcpt: str | None = None, status: str = "bounced",
         dsn: str | None = "5.1.1",
         reason: str | None = "host mx.remote.example[192.0.2.1] said: 550 5.1.1 "
                              "<bob@remote.example>: User unknown (in reply to RCPT TO command)",
         relay: str | None = "mx.remote.example[192.0.2.1]:25") -> QueuedRecipient:
    return QueuedRecipient(seq, address, orig if orig is not None else address, notify, orcpt,
                           status, dsn, reason, relay, True, False)


def message(*rcpts: QueuedRecipient, sender: str = "alice@example.org", ret: str | None = None,
            envid: str | None = None, attrs: Mapping[str, str] | None = None,
            size: int | None = None, queue_id: str = "ABC123") -> QueuedMessage:
    content_size = len(ORIGINAL) if size is None else size
    return QueuedMessage(
        queue_id=queue_id, state="active", sender=sender, recipients=rcpts or (rcpt(),),
        size=content_size, content_size=content_size, arrival_time=ARRIVAL,
        create_time=ARRIVAL, envid=envid, ret=ret, attrs=dict(attrs or {}),
        next_attempt=None, last_attempt=None, attempt_count=1, warned_delay=False,
    )


@dataclass
class Parsed:
    msg: EmailMessage
    text: str
    per_message: Message | None
    per_recipient: list[Message]
    original: Message | None
    original_type: str | None
    report_type: str


def parse(content: bytes) -> Parsed:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) in (2, 3)
    assert parts[0].get_content_type() == "text/plain"
    text = parts[0].get_content()
    report = parts[1]
    blocks: list[Message]
    if report.get_content_type() == "message/delivery-status":
        blocks = report.get_payload()
    else:  # message/global-delivery-status is not special to the email package: cut it out
        start = content.index(b"Content-Type: message/global-delivery-status")
        start = content.index(b"\n\n", start) + 2
        end = content.index(b"\n--" + msg.get_boundary().encode(), start)
        raw = content[start:end].decode("utf-8")
        blocks = [email.message_from_string(b, policy=email.policy.default)
                  for b in raw.strip("\n").split("\n\n")]
    original = parts[2] if len(parts) == 3 else None
    return Parsed(msg, text, blocks[0], list(blocks[1:]), original,
                  original.get_content_type() if original is not None else None,
                  report.get_content_type())


def unfolded(value: object) -> str:
    return " ".join(str(value).split())
