"""The SMTP server's postmaster notice: a session transcript for notify_classes errors.

Owns: the notice smtpd sends to error_notice_recipient when a session hit an error class
listed in notify_classes (policy, protocol, resource, software, ...): envelope sender the
double-bounce address (so it can never bounce back and forth), a short header and the
transcript, each line indented one space so client text cannot pose as a header or a
boundary, masked to printable ASCII and wrapped.

Must not: decide whether to send (policy.wants_error_notice) or enqueue (notifier.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

from mailcore.bounce.dsn import Notice, mail_date, wrap
from mailcore.bounce.policy import BounceSettings

TRANSCRIPT_WRAP = 78


def _printable(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def build_error_notice(client: str, transcript: Iterable[str], reason: str | None,
                       settings: BounceSettings, now: float) -> Notice:
    """``client`` as ``name[address]``; ``transcript`` lines like ``In:  MAIL FROM:<x>``."""
    to = settings.qualify(settings.error_notice_recipient)
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    lines = [
        f"Date: {mail_date(now)}",
        f"From: {settings.mailer_daemon} (Mail Delivery System)",
        f"To: {to} (Postmaster)",
        f"Subject: {settings.mail_name} SMTP server: errors from {_printable(client)}",
        "Auto-Submitted: auto-generated",
        f"Message-ID: <{stamp}.{secrets.token_hex(6).upper()}@{settings.myhostname}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "The SMTP session transcript follows.",
        "",
    ]
    for entry in transcript:
        lines += [" " + part for part in wrap(_printable(entry), TRANSCRIPT_WRAP)]
    lines.append("")
    if reason:
        lines += [f"The session ended early: {_printable(reason)}", ""]
    lines.append("The mail log has further details.")
    content = ("\n".join(lines) + "\n").encode("ascii")
    return Notice(settings.double_bounce_address, (to,), content, "postmaster error notice")
