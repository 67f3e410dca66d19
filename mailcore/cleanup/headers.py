"""Headers cleanup writes itself: Received, and the attributes stored with a message.

Must not: do I/O.
"""

from __future__ import annotations

import math
import re
import time

from mailcore.model import ClientInfo, Envelope

HEADER_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def header_name(first_line: bytes) -> str:
    """The lower-cased name of a header from its first physical line ('' if none)."""
    match = HEADER_NAME.match(first_line)
    return match.group(1).decode("ascii").lower() if match else ""


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822_date(when: float | None = None) -> str:
    """The local time as email.utils.formatdate(when, localtime=True) writes it, at a
    fraction of its cost (it goes through two datetime objects): this runs per message."""
    if when is None:
        when = time.time()
    second = math.floor(when)
    if round((when - second) * 1e6) >= 1_000_000:
        second += 1  # datetime rounds to the microsecond first, and so may reach the next second
    t = time.localtime(second)
    offset = t.tm_gmtoff
    hours, rest = divmod(abs(offset), 3600)
    minutes, seconds = divmod(rest, 60)
    zone = f"{'-' if offset < 0 else '+'}{hours:02d}{minutes:02d}"
    if seconds:
        zone += f"{seconds:02d}"
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {zone}")


def received_header(
    *, client: ClientInfo, myhostname: str, mail_name: str, queue_id: str,
    recipients: list[str], when: float | None = None, local_uid: int | None = None,
) -> list[bytes]:
    """Postfix's Received header as physical lines (remote: from/by/with/id/for)."""
    date = rfc2822_date(when)
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
