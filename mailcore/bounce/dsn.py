"""RFC 3464 delivery status notifications as bytes: bounce, delay and success notices.

Owns: the notice's layout — the message header (From MAILER-DAEMON, the postmaster or sender
subject, Auto-Submitted), a multipart/report; report-type=delivery-status with (1) a
readable text/plain part, (2) a message/delivery-status part (per message: Reporting-MTA,
Original-Envelope-Id, X-<mail_name>-Queue-ID, X-<mail_name>-Sender, Arrival-Date; per
recipient: Final-Recipient, Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
Will-Retry-Until) and (3) the original message or its headers. For SMTPUTF8 mail (RFC 6533)
parts 2 and 3 become message/global-delivery-status and message/global(-headers), as Postfix.

Must not: decide who gets a notice (policy.py) or touch the queue (notifier.py).

Invariants: output uses LF line ends; the MIME boundary never occurs in any part; the
wording is mailcore's own, the structure and fields are Postfix's bounce(8).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate

from mailcore.bounce.original import collect_original, returned_mode
from mailcore.bounce.policy import (
    BOUNCE,
    DELAY,
    FULL,
    HDRS,
    SUCCESS,
    BounceSettings,
    NoticePlan,
)
from mailcore.queue.types import NewMessage, NewRecipient, QueuedMessage, QueuedRecipient

WRAP = 79
INDENT = 4  # continuation indent in the readable part, as Postfix
FIELD_INDENT = 1  # folded report fields: unfolding restores the text exactly

_SUBJECTS = {
    (BOUNCE, False): "Undelivered Mail Returned to Sender",
    (BOUNCE, True): "Postmaster Copy: Undelivered Mail",
    (DELAY, False): "Delayed Mail (still being retried)",
    (DELAY, True): "Postmaster Warning: Delayed Mail",
    (SUCCESS, False): "Successful Mail Delivery Report",
    (SUCCESS, True): "Successful Mail Delivery Report",
}
_DEFAULT_STATUS = {BOUNCE: "5.0.0", DELAY: "4.0.0", SUCCESS: "2.0.0"}
_REMOTE_RELAY = re.compile(r"([^\s\[\]]+)\[[^\]]*\](?::\d+)?\Z")
_REPLY = re.compile(r"(?:\A|\bsaid: )([2-5]\d\d(?:[ -].*)?)\Z")
_IN_REPLY_TO = re.compile(r"\s*\(in reply to [^()]*\)\Z")
_ATOM_SPECIALS = re.compile(r"[\s()<>@,;:\\\".\[\]]")


@dataclass(frozen=True)
class Notice:
    """A finished notice: the envelope and the message, ready for the queue."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    label: str = ""
    smtputf8: bool = False
    eight_bit: bool = False

    def new_message(self, arrival_time: float, queue_id: str | None = None) -> NewMessage:
        attrs = {"rewrite_context": "local"}
        if self.eight_bit:
            attrs["body_type"] = "8BITMIME"
        if self.smtputf8:
            attrs["smtputf8"] = "yes"
        return NewMessage(
            sender=self.sender, recipients=tuple(NewRecipient(r) for r in self.recipients),
            content_path=None, content=self.content, size=len(self.content),
            arrival_time=arrival_time, attrs=attrs, queue_id=queue_id,
        )


def sender_plan(kind: str, message: QueuedMessage,
                recipients: Sequence[QueuedRecipient]) -> NoticePlan:
    """The plain sender notice (no NOTIFY filtering): RET as requested for bounces
    (FULL when absent), headers only for delay and success notices, as Postfix."""
    ret = (message.ret or FULL).upper() if kind == BOUNCE else HDRS
    words = {BOUNCE: "non-delivery notification", DELAY: "delay notification",
             SUCCESS: "delivery status notification"}[kind]
    return NoticePlan(kind, message.sender, "", tuple(recipients),
                      ret if ret in (FULL, HDRS) else FULL, False, f"sender {words}", True)


def build_dsn(kind: str, message: QueuedMessage, recipients: Sequence[QueuedRecipient],
              content: Iterable[bytes] | None, settings: BounceSettings, now: float, *,
              actions: Mapping[int, str] | None = None, queue_id: str | None = None) -> Notice:
    """The notice to ``message``'s sender about ``recipients`` (null envelope sender)."""
    return build_notice(sender_plan(kind, message, recipients), message, content, settings,
                        now, actions=actions, queue_id=queue_id)


def build_notice(plan: NoticePlan, message: QueuedMessage, content: Iterable[bytes] | None,
                 settings: BounceSettings, now: float, *,
                 actions: Mapping[int, str] | None = None,
                 queue_id: str | None = None) -> Notice:
    """Any planned notice; ``content`` is the stored message as chunks (None: unavailable)."""
    mode = original_mode(plan, message, settings)
    original = None if content is None else collect_original(
        content, mode, settings.bounce_size_limit)
    return render(plan, message, original, mode, settings, now, actions=actions,
                  queue_id=queue_id)


def original_mode(plan: NoticePlan, message: QueuedMessage, settings: BounceSettings) -> str:
    size = message.content_size or message.size
    return returned_mode(plan.ret, size, settings.bounce_size_limit)


def render(plan: NoticePlan, message: QueuedMessage, original: bytes | None, mode: str,
           settings: BounceSettings, now: float, *, actions: Mapping[int, str] | None = None,
           queue_id: str | None = None) -> Notice:
    """Assemble the notice from an already collected original (see original.py)."""
    smtputf8 = message.attrs.get("smtputf8") == "yes"
    if original is not None:
        original = f"Return-Path: <{message.sender}>\n".encode() + original
    text = _text_part(plan, message, settings, original is not None)
    report = _report_part(plan, message, settings, now, smtputf8, actions or {})
    boundary = _boundary(message.queue_id, now, settings.myhostname,
                         (text.encode(), report.encode(), original or b""))
    text_8bit = not text.isascii()
    orig_8bit = original is not None and not original.isascii()
    eight_bit = (text_8bit or not report.isascii() or orig_8bit
                 or message.attrs.get("body_type", "").upper() == "8BITMIME")
    head = _headers(plan, settings, now, boundary, eight_bit, queue_id)
    out = [head, "", "This is a MIME-encapsulated message.", "",
           f"--{boundary}", "Content-Description: Notification",
           f"Content-Type: text/plain; charset={'utf-8' if text_8bit else 'us-ascii'}"]
    if text_8bit:
        out.append("Content-Transfer-Encoding: 8bit")
    out += ["", text, f"--{boundary}", "Content-Description: Delivery report",
            f"Content-Type: message/{'global-' if smtputf8 else ''}delivery-status"]
    if smtputf8 and not report.isascii():
        out.append("Content-Transfer-Encoding: 8bit")
    out += ["", report]
    body = ("\n".join(out) + "\n").encode()
    if original is not None:
        undelivered = "Undelivered " if plan.kind in (BOUNCE, DELAY) else ""
        what = "Message Headers" if mode == HDRS else "Message"
        if smtputf8:
            ctype = "message/global-headers" if mode == HDRS else "message/global"
        else:
            ctype = "text/rfc822-headers" if mode == HDRS else "message/rfc822"
        part3 = [f"--{boundary}", f"Content-Description: {undelivered}{what}",
                 f"Content-Type: {ctype}"]
        if orig_8bit:
            part3.append("Content-Transfer-Encoding: 8bit")
        body += ("\n".join(part3) + "\n\n").encode() + original + b"\n"
    body += f"--{boundary}--\n".encode()
    return Notice(plan.envelope_sender, (plan.to,), body, plan.label,
                  smtputf8 and not body.isascii(), eight_bit)


# --------------------------------------------------------------------------- header


def mail_date(when: float) -> str:
    return formatdate(when, localtime=True)


def _headers(plan: NoticePlan, settings: BounceSettings, now: float, boundary: str,
             eight_bit: bool, queue_id: str | None) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    msgid = f"<{stamp}.{queue_id or secrets.token_hex(6).upper()}@{settings.myhostname}>"
    lines = []
    if queue_id:
        lines.append(f"Received: by {settings.myhostname} ({settings.mail_name})\n"
                     f"\tid {queue_id}; {mail_date(now)}")
    lines += [
        f"Date: {mail_date(now)}",
        f"From: {settings.mailer_daemon} (Mail Delivery System)",
        f"Subject: {_SUBJECTS[plan.kind, plan.postmaster_copy]}",
        f"To: {plan.to}",
        f"Auto-Submitted: {'auto-generated' if plan.postmaster_copy else 'auto-replied'}",
        f"Message-ID: {msgid}",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        f"Content-Transfer-Encoding: {'8bit' if eight_bit else '7bit'}",
    ]
    return "\n".join(lines)


def _boundary(queue_id: str, now: float, host: str, parts: Iterable[bytes]) -> str:
    boundary = f"{queue_id}.{int(now)}/{host}"
    data = tuple(parts)
    while any(b"--" + boundary.encode() in part for part in data):
        boundary = f"{queue_id}.{int(now)}.{secrets.token_hex(8)}/{host}"
    return boundary


# --------------------------------------------------------------------------- part 1


def _text_part(plan: NoticePlan, message: QueuedMessage, settings: BounceSettings,
               have_original: bool) -> str:
    lines = [] if plan.postmaster_copy else _boilerplate(plan.kind, settings)
    if plan.postmaster_copy:
        lines += [f"Notice about message {message.queue_id} from "
                  f"<{message.sender or settings.mailer_daemon}>.", ""]
    for rcpt in plan.recipients:
        shown = f"<{rcpt.address}>"
        if rcpt.orig_rcpt and rcpt.orig_rcpt.lower() != rcpt.address.lower():
            shown += f" (expanded from <{rcpt.orig_rcpt}>)"
        lines += wrap(f"{shown}: {rcpt.reason or _DEFAULT_REASON[plan.kind]}")
        lines.append("")
    if not have_original:
        lines += ["(The original message is no longer available.)", ""]
    return "\n".join(lines)


_DEFAULT_REASON = {BOUNCE: "delivery failed", DELAY: "delivery delayed",
                   SUCCESS: "delivery successful"}


def _boilerplate(kind: str, s: BounceSettings) -> list[str]:
    intro = [f"This report comes from the {s.mail_name} mail system on {s.myhostname}.", ""]
    if kind == BOUNCE:
        intro += ["Your message could not be delivered to the recipients listed below,",
                  "for the reasons given. It is returned at the end of this report."]
    elif kind == DELAY:
        intro += ["*** Only a warning: there is no need to send your message again. ***", "",
                  f"Delivery has not succeeded for {s.delay_warning_time / 3600:.1f} hours.",
                  "The mail system keeps trying until the message is "
                  f"{s.maximal_queue_lifetime / 86400:.1f} days old."]
    else:
        intro += ["You asked to be told when your message was delivered.",
                  "The delivery report for the recipients below follows."]
    if kind != SUCCESS:
        intro += ["", f"For help, write to <{s.qualify('postmaster')}> and include this",
                  "report; you may delete your own text from the returned message."]
    return [*intro, "", f"    -- the {s.mail_name} mail system", ""]


def wrap(text: str, width: int = WRAP, indent: int = INDENT) -> list[str]:
    """Postfix's line_wrap: break at spaces, continuation lines indented."""
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        prefix = " " * indent if lines else ""
        candidate = f"{current} {word}" if current else f"{prefix}{word}"
        if current and len(candidate) > width:
            lines.append(current)
            current = " " * indent + word
        else:
            current = candidate
    lines.append(current)
    return lines


# --------------------------------------------------------------------------- part 2


def _report_part(plan: NoticePlan, message: QueuedMessage, settings: BounceSettings,
                 now: float, smtputf8: bool, actions: Mapping[int, str]) -> str:
    name = _ATOM_SPECIALS.sub("-", settings.mail_name) or "mailcore"
    fields = [f"Reporting-MTA: dns; {settings.myhostname}"]
    if message.envid:
        fields.append(f"Original-Envelope-Id: {message.envid}")
    fields.append(f"X-{name}-Queue-ID: {message.queue_id}")
    sender = message.sender or settings.mailer_daemon
    fields.append(f"X-{name}-Sender: {_typed_address(sender, smtputf8)}")
    if message.arrival_time > 0:
        fields.append(f"Arrival-Date: {mail_date(message.arrival_time)}")
    blocks = ["\n".join(fields)]
    for rcpt in plan.recipients:
        blocks.append("\n".join(_recipient_fields(plan.kind, rcpt, message, settings, name,
                                                  smtputf8, actions)))
    return "\n\n".join(blocks) + "\n"


def _recipient_fields(kind: str, rcpt: QueuedRecipient, message: QueuedMessage,
                      settings: BounceSettings, name: str, smtputf8: bool,
                      actions: Mapping[int, str]) -> list[str]:
    fields = [f"Final-Recipient: {_typed_address(rcpt.address, smtputf8)}"]
    if rcpt.orcpt:
        addr_type, _, addr = rcpt.orcpt.partition(";")
        fields.append(f"Original-Recipient: {addr_type};{_field_text(addr, smtputf8)}")
    elif rcpt.orig_rcpt and rcpt.orig_rcpt.lower() != rcpt.address.lower():
        # Postfix reports the pre-rewrite address even without ORCPT (see docs/bounces.md).
        fields.append(f"Original-Recipient: {_typed_address(rcpt.orig_rcpt, smtputf8)}")
    action = {BOUNCE: "failed", DELAY: "delayed"}.get(kind) or actions.get(
        rcpt.seq, "delivered")
    fields += [f"Action: {action}", f"Status: {rcpt.dsn_status or _DEFAULT_STATUS[kind]}"]
    remote, dtype, dtext = diagnostic(rcpt.reason or "", rcpt.relay or "", name)
    if remote:
        fields += wrap(f"Remote-MTA: dns; {remote}", indent=FIELD_INDENT)
    if dtext:
        fields += wrap(f"Diagnostic-Code: {dtype}; {_field_text(dtext, smtputf8)}",
                       indent=FIELD_INDENT)
    if kind == DELAY:
        until = message.arrival_time + settings.maximal_queue_lifetime
        fields.append(f"Will-Retry-Until: {mail_date(until)}")
    return fields


def diagnostic(reason: str, relay: str, name: str) -> tuple[str | None, str, str]:
    """(Remote-MTA host or None, diagnostic type, diagnostic text) for one outcome.

    A reply from a remote SMTP/LMTP server is reported as ``smtp; <code> <text>``; any other
    reason as ``X-<mail_name>; <text>`` (Postfix's X-Postfix)."""
    match = _REMOTE_RELAY.match(relay)
    remote = match.group(1) if match and match.group(1) != "none" else None
    reply = _REPLY.search(reason)
    if reply:
        return remote, "smtp", _IN_REPLY_TO.sub("", reply.group(1))
    return remote, f"X-{name}", reason


def _typed_address(address: str, smtputf8: bool) -> str:
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {_field_text(address, smtputf8)}"


def _field_text(text: str, smtputf8: bool) -> str:
    """UTF-8 stays as is in message/global-delivery-status; elsewhere RFC 6533 \\x{HEX}."""
    if smtputf8 or text.isascii():
        return text
    return "".join(ch if ch.isascii() else f"\\x{{{ord(ch):X}}}" for ch in text)
