"""Frozen types that cross module boundaries on the way in (smtpd/pickup → cleanup → queue).

Must not: import the rest of mailcore; these are plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClientInfo:
    """Who handed us a message; "unknown" names as in Postfix's logs and Received headers."""

    address: str  # "127.0.0.1", "::1"; "" for local submission
    port: int = 0
    name: str = "unknown"  # forward-confirmed reverse name, else "unknown"
    reverse_name: str = "unknown"  # PTR name, confirmed or not
    helo: str = ""
    protocol: str = "SMTP"  # SMTP, ESMTP, ESMTPS, … as in Received "with"
    sasl_user: str = ""

    @property
    def display(self) -> str:
        """``name[address]`` as Postfix logs a client."""
        return f"{self.name}[{self.address}]"


@dataclass(frozen=True)
class EnvelopeRecipient:
    address: str  # as it will be queued (validated, IDNA-normalised domain)
    orig_rcpt: str | None = None  # the address as the client wrote it, for DSNs
    notify: str | None = None  # DSN NOTIFY: "NEVER" or a comma list of SUCCESS,FAILURE,DELAY
    orcpt: str | None = None  # DSN ORCPT: "rfc822;addr" (xtext decoded)


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" for the null sender
    recipients: tuple[EnvelopeRecipient, ...]
    client: ClientInfo
    arrival_time: float
    ret: str | None = None  # DSN RET: FULL or HDRS
    envid: str | None = None  # DSN ENVID (xtext decoded)
    body_type: str = ""  # "7BIT", "8BITMIME", "BINARYMIME" or "" when not declared
    smtputf8: bool = False
    local_submission: bool = False  # sendmail command / pickup: headers get completed
    attrs: tuple[tuple[str, str], ...] = field(default=())  # extra named attributes
