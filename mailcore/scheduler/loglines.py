"""The maillog lines the queue manager writes, in Postfix's exact wording.

Owns the text of ``QUEUEID: to=<…>, orig_to=<…>, relay=…, delay=…, delays=a/b/c/d, dsn=…,
status=… (…)``, ``QUEUEID: removed`` and the expiry line.

Must not: write anything; MailLog does.
"""

from __future__ import annotations

from mailcore.log import format_delay
from mailcore.model import Delays


def delivery_line(
    queue_id: str,
    address: str,
    orig_rcpt: str | None,
    *,
    relay: str,
    delay: float,
    delays: Delays,
    dsn: str,
    status: str,
    reason: str,
) -> str:
    """One recipient's outcome; orig_to only when it differs (ignoring case), as Postfix."""
    parts = [f"{queue_id}: to=<{address}>"]
    if orig_rcpt and orig_rcpt.lower() != address.lower():
        parts.append(f"orig_to=<{orig_rcpt}>")
    split = "/".join(
        format_delay(value)
        for value in (delays.before_queue, delays.in_queue, delays.setup, delays.transmission)
    )
    parts += [
        f"relay={relay or 'none'}",
        f"delay={format_delay(delay)}",
        f"delays={split}",
        f"dsn={dsn}",
        f"status={status} ({reason})",
    ]
    return ", ".join(parts)


def removed_line(queue_id: str) -> str:
    return f"{queue_id}: removed"


def expired_line(queue_id: str, sender: str) -> str:
    return f"{queue_id}: from=<{sender}>, status=expired, returned to sender"
