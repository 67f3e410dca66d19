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


# --- the way out: scheduler → delivery agents → queue --------------------------------------

SENT = "sent"
DEFERRED = "deferred"
BOUNCED = "bounced"

# RecipientResult.action for a success whose NOTIFY the next hop accepted over DSN: the duty
# to send the success notice went with the message, so mailcore sends none (as Postfix).
DELEGATED = "delegated"


@dataclass(frozen=True)
class Route:
    """What trivial-rewrite's resolve returns for one recipient."""

    transport: str  # a master.cf service name: smtp, relay, local, virtual, lmtp, error, ...
    nexthop: str  # "example.com", "[mx.example.com]:2525", "unix:/path", or error text
    recipient: str  # the address after rewriting


@dataclass(frozen=True)
class RecipientRef:
    """One recipient inside a delivery request; ``seq`` identifies it in the queue."""

    seq: int
    address: str
    orig_rcpt: str | None = None
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class DeliveryRequest:
    queue_id: str
    sender: str
    recipients: tuple[RecipientRef, ...]  # at most the transport's recipient limit
    transport: str
    nexthop: str
    size: int
    arrival_time: float
    envid: str | None = None
    ret: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()  # client facts, smtputf8, body_type, …


@dataclass(frozen=True)
class Delays:
    """Postfix's delays=a/b/c/d: before queue, in queue, connection setup, transmission."""

    before_queue: float = 0.0
    in_queue: float = 0.0
    setup: float = 0.0
    transmission: float = 0.0


@dataclass(frozen=True)
class Destination:
    """One final destination a recipient was expanded to (local aliases, .forward): logged
    on its own line as Postfix's local(8) does, ``to=<address>, orig_to=<recipient>``."""

    address: str
    status: str
    dsn: str
    reason: str


@dataclass(frozen=True)
class RecipientResult:
    seq: int
    status: str  # SENT, DEFERRED or BOUNCED
    dsn: str  # enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
    reason: str  # the remote reply or the local reason, sanitised
    relay: str = "none"  # "mx.example.com[192.0.2.1]:25", "local", "none"
    action: str = ""  # DSN action: "relayed", "delivered", "expanded", or DELEGATED
    # Set when the agent delivered to other addresses than the queued one; status, dsn and
    # reason above are then the recipient's overall outcome (what the queue records).
    destinations: tuple[Destination, ...] = ()


@dataclass(frozen=True)
class DeliveryResult:
    queue_id: str
    recipients: tuple[RecipientResult, ...]
    delays: Delays = Delays()
