"""Reply texts as Postfix's smtpd_check_reject builds them.

Owns: the enhanced-status helpers (``dsn_split`` of an access-table text, ``dsn_fix`` for
address-specific codes used with the wrong address class), the sanity rules for a reply
(code 4xx/5xx, valid status, 510 characters, printable) and soft_bounce.

Must not: decide whether to refuse; callers do.

Invariants: a reply's enhanced status class digit always equals its code's first digit.
"""

from __future__ import annotations

import re

from mailcore.restrictions.types import CLASS_RECIPIENT, CLASS_SENDER

_DSN = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")
MAX_REPLY = 510
SERVICE_UNAVAILABLE = (450, "4.7.1", "Service unavailable")

# The last digit of an x.1.y status → (as a sender status, as a recipient status).
_ADDRESS_DSN = {
    "1": ("4.1.0", "4.1.1"), "2": ("4.1.8", "4.1.2"), "3": ("4.1.7", "4.1.3"),
    "4": ("4.1.0", "4.1.4"), "5": ("4.1.0", "4.1.5"), "6": ("4.1.0", "4.1.6"),
    "7": ("4.1.7", "4.1.3"), "8": ("4.1.8", "4.1.2"),
}


def dsn_split(default: str, text: str) -> tuple[str, str]:
    """``"5.7.2 go away"`` → ("5.7.2", "go away"); without a status, the default."""
    text = text.strip()
    match = _DSN.match(text)
    if match is None:
        return default, text
    return match.group(0), text[match.end():].strip()


def dsn_fix(status: str, reply_class: str) -> str:
    """An address status (x.1.y) fitted to the class being refused (smtpd_dsn_fix)."""
    if status[1:4] != ".1.":
        return status
    sender, recipient = _ADDRESS_DSN.get(status[4:], ("4.1.0", "4.1.1"))
    if reply_class == CLASS_SENDER:
        return sender
    if reply_class == CLASS_RECIPIENT:
        return recipient
    return "4.0.0"  # an address status makes no sense for a client, HELO or DATA refusal


def valid_dsn(status: str) -> bool:
    return _DSN.fullmatch(status) is not None


def finish_reply(code: int, dsn: str, text: str, *, soft_bounce: bool
                 ) -> tuple[tuple[int, str, str], str | None]:
    """The reply Postfix sends, and a warning when the configured one was unusable."""
    warning = None
    if not 400 <= code <= 599:
        warning = f"SMTP reply code configuration error: {code} {dsn} {text}"
        code, dsn, text = SERVICE_UNAVAILABLE
    elif not valid_dsn(dsn):
        warning = f"DSN detail code configuration error: {code} {dsn} {text}"
        code, dsn, text = SERVICE_UNAVAILABLE
    text = "".join(c if c.isprintable() else " " for c in text)
    text = text[: max(0, MAX_REPLY - len(f"{code} {dsn} "))]
    if soft_bounce and code >= 500:
        code -= 100
    dsn = f"{str(code)[0]}{dsn[1:]}"
    return (code, dsn, text), warning
