"""The values that cross between smtpd and the restriction evaluator.

Owns: ``Facts`` (what a check may look at), ``Verdict`` (the decision and the side effects
smtpd and cleanup apply), ``Deferral`` (a postponed defer_if_permit decision carried from one
SMTP stage to the next) and Postfix's reply classes.

Must not: import smtpd or do I/O; these are plain frozen values.

Invariants: a Verdict whose action is not PERMIT carries a 4xx or 5xx code whose first digit
equals the enhanced status class digit; side effects (hold, discard, redirect, filter,
prepend) are reported on permits and refusals alike, as Postfix keeps them for the
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.model import ClientInfo

PERMIT = "permit"
REJECT = "reject"
DEFER = "defer"

# Stages as smtpd names them, and the reply name/class Postfix uses for each list.
CONNECT, HELO, MAIL, RCPT, DATA, END_OF_DATA = (
    "connect", "helo", "mail", "rcpt", "data", "end_of_data")
CLASS_CLIENT = "Client host"
CLASS_HELO = "Helo command"
CLASS_SENDER = "Sender address"
CLASS_RECIPIENT = "Recipient address"
CLASS_DATA = "Data command"
CLASS_EOD = "End-of-data"


@dataclass(frozen=True)
class Deferral:
    """A remembered temporary failure (defer_if_permit / defer_if_reject)."""

    code: int
    dsn: str
    text: str


@dataclass(frozen=True)
class Facts:
    """What the restrictions may look at, at the stage being checked.

    ``where`` is the command name for log lines (EHLO, RCPT, END-OF-MESSAGE); ``pipelined``
    says the client sent more input before our reply; ``discard`` says an earlier DISCARD
    action already claimed this transaction; ``prior_deferral`` is the defer_if_permit state
    of the earlier stages (smtpd_delay_reject = no); ``rcpt_count`` counts accepted
    recipients so far.
    """

    stage: str  # connect, helo, mail, rcpt, data, end_of_data
    client: ClientInfo
    helo: str = ""
    sender: str | None = None
    recipient: str | None = None
    where: str = ""
    protocol: str = "SMTP"
    queue_id: str | None = None
    rcpt_count: int = 0
    size: int = 0
    pipelined: bool = False
    discard: bool = False
    prior_deferral: Deferral | None = None


@dataclass(frozen=True)
class Event:
    """Something smtpd logs as ``QUEUEID: <whatsup>: WHERE from CLIENT: <text>; from=…``."""

    whatsup: str  # warn, hold, discard, redirect, filter, reject_warning
    text: str


@dataclass(frozen=True)
class Verdict:
    action: str  # permit, reject or defer
    code: int = 250
    dsn: str = "2.0.0"
    text: str = "Ok"
    hold: bool = False
    discard: bool = False
    redirect: str | None = None
    filter: str | None = None
    prepend: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    deferral: Deferral | None = None  # defer_if_permit state to carry to the next stage

    @property
    def reply(self) -> str:
        return f"{self.code} {self.dsn} {self.text}"

    @property
    def refused(self) -> bool:
        return self.action != PERMIT
