"""What one SMTP session remembers between commands, and the disconnect log summary.

Owns: ``SessionState`` (HELO name, ESMTP or not, the mail transaction, error and junk
counters, per-command counts, the defer_if_permit results of earlier stages),
``Transaction`` (sender, MAIL parameters, recipients, queue ID, BDAT progress), ``Effects``
(the access-table actions HOLD, DISCARD, REDIRECT, FILTER, PREPEND a transaction collected)
and ``disconnect_counts`` (Postfix 3.x's ``ehlo=1 mail=1 … commands=3/4``).

Must not: decide policy, build replies other than storing one, or do any I/O; these are
plain data plus the few pure functions that read them.

Invariants: ``SessionState.envelope`` is only called while a transaction exists; counts
hold ``[accepted, total]`` per command name; ``Effects`` only ever gains actions (a
transaction's effects last until it ends, whether or not the command that set them was
accepted). Reads no parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from mailcore.model import ClientInfo, Envelope, EnvelopeRecipient
from mailcore.restrictions import Deferral, Verdict
from mailcore.smtpd.settings import Reply

COMMAND_ORDER = ("helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset",
                 "noop", "vrfy", "etrn", "quit", "unknown")


@dataclass
class Effects:
    """What access-table actions asked of cleanup for this transaction (Postfix keeps them
    until the transaction ends, whether or not the command that set them was accepted)."""

    hold: bool = False
    discard: bool = False
    redirect: str | None = None
    filter: str | None = None
    prepend: list[str] = field(default_factory=list)

    def add(self, verdict: Verdict) -> None:
        self.hold = self.hold or verdict.hold
        self.discard = self.discard or verdict.discard
        self.redirect = verdict.redirect or self.redirect
        self.filter = verdict.filter or self.filter
        self.prepend.extend(h for h in verdict.prepend if h not in self.prepend)


@dataclass
class Transaction:
    sender: str
    size: int = 0
    body: str = ""
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    recipients: list[EnvelopeRecipient] = field(default_factory=list)
    queue_id: str | None = None
    started: float = field(default_factory=time.time)
    effects: Effects = field(default_factory=Effects)
    bdat: bool = False  # a BDAT chunk was sent for this transaction (DATA and RCPT refused)
    bdat_failed: Reply | None = None  # the refusal every further chunk gets


@dataclass
class SessionState:
    client: ClientInfo
    helo: str = ""
    esmtp: bool = False
    tx: Transaction | None = None
    errors: int = 0
    junk: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)
    # defer_if_permit left by the connect, HELO and MAIL stages (smtpd_delay_reject = no)
    deferrals: dict[str, Deferral | None] = field(default_factory=dict)

    def count(self, name: str, ok: bool) -> None:
        ok_total = self.counts.setdefault(name, [0, 0])
        ok_total[0] += int(ok)
        ok_total[1] += 1

    def envelope(self) -> Envelope:
        tx = self.tx
        assert tx is not None
        protocol = ("UTF8" if tx.smtputf8 else "") + ("ESMTP" if self.esmtp else "SMTP")
        return Envelope(
            sender=tx.sender, recipients=tuple(tx.recipients),
            client=replace(self.client, helo=self.helo, protocol=protocol),
            arrival_time=tx.started, ret=tx.ret, envid=tx.envid, body_type=tx.body,
            smtputf8=tx.smtputf8,
        )


def disconnect_counts(state: SessionState) -> str:
    """Postfix 3.x ``ehlo=1 mail=1 rcpt=0/1 … commands=3/4``."""
    parts, ok_sum, total_sum = [], 0, 0
    for name in COMMAND_ORDER:
        if name in state.counts:
            ok, total = state.counts[name]
            parts.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
            ok_sum, total_sum = ok_sum + ok, total_sum + total
    parts.append(f"commands={ok_sum}" if ok_sum == total_sum else
                 f"commands={ok_sum}/{total_sum}")
    return " ".join(parts)
