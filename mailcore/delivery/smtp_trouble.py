"""What a failure does to the recipients of one SMTP delivery (Postfix's smtp_trouble.c).

Owns: the per-request recipient book-keeping and the policy: a soft failure (4.x.x, or 5.x.x
under soft_bounce) at a server that is not the final one only marks the recipients to be
tried at the next server; at the final server, or for a hard failure, the recipients get a
deferred or bounced result. Failures come in three scopes: the whole session (connection,
greeting, EHLO, I/O errors, message-level replies) applies to every recipient not yet
decided in this session; a RCPT reply applies to one recipient; recipients left over after
the last server get the last failure seen.

Must not: do I/O. Invariants: a recipient gets exactly one result; results never change
once given; ``pending`` keeps the request's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailcore.model import BOUNCED, DEFERRED, SENT, Delays, RecipientRef, RecipientResult
from mailcore.status import sanitize

NO_RELAY = "none"


@dataclass(frozen=True)
class Failure:
    dsn: str
    reason: str
    relay: str = NO_RELAY

    @property
    def soft(self) -> bool:
        return self.dsn.startswith("4")


class Attempt:
    """The state of one deliver() call: who is still pending and what happened so far."""

    def __init__(self, recipients: Iterable[RecipientRef], *, soft_bounce: bool,
                 clock: Callable[[], float]):
        self.pending: dict[int, RecipientRef] = {r.seq: r for r in recipients}
        self.results: dict[int, RecipientResult] = {}
        self.why: Failure | None = None  # the last failure, for left-over recipients
        self.final_server = False
        self._marked: set[int] = set()  # kept for a backup server, or decided, this session
        self._soft_bounce = soft_bounce
        self._clock = clock
        self._started = clock()
        self._setup_done: float | None = None
        self._done: float | None = None

    # --- session scope ------------------------------------------------------------------
    def unmarked(self) -> list[RecipientRef]:
        return [r for seq, r in self.pending.items() if seq not in self._marked]

    def end_session(self) -> None:
        self._marked.clear()

    def setup_done(self) -> None:
        """The connection is set up: MAIL FROM is about to go out."""
        self._setup_done = self._clock()

    def bulk_fail(self, failure: Failure) -> None:
        """Skip this server, or defer/bounce every recipient not yet decided here."""
        self.why = failure
        if self._qualifies_for_backup(failure):
            self._marked.update(r.seq for r in self.unmarked())
            return
        self._finish_clock()
        for rcpt in self.unmarked():
            self._decide(rcpt.seq, failure)

    def rcpt_fail(self, seq: int, failure: Failure) -> None:
        self.why = failure
        if self._qualifies_for_backup(failure):
            self._marked.add(seq)
        else:
            self._decide(seq, failure)

    def rcpt_done(self, seq: int, dsn: str, reason: str, relay: str, action: str) -> None:
        self._done = self._clock()
        self._give(RecipientResult(seq, SENT, dsn, sanitize(reason), relay, action))

    def reject(self, seq: int, failure: Failure) -> None:
        """Decided before any server is involved (an address that fails validation)."""
        self._decide(seq, failure)

    def finish(self) -> None:
        """Recipients left after every server was tried get the last failure."""
        if self.pending:
            self.final_server = True
            self._marked.clear()
            self.bulk_fail(self.why or Failure(
                "4.3.0", "server unavailable or unable to receive mail"))

    # --- results ------------------------------------------------------------------------
    def delays(self) -> Delays:
        end = self._done if self._done is not None else self._clock()
        setup_end = self._setup_done if self._setup_done is not None else end
        return Delays(setup=max(0.0, setup_end - self._started),
                      transmission=max(0.0, end - setup_end))

    def ordered(self, order: Iterable[int]) -> tuple[RecipientResult, ...]:
        return tuple(self.results[seq] for seq in order if seq in self.results)

    def _qualifies_for_backup(self, failure: Failure) -> bool:
        soft = failure.soft or (self._soft_bounce and failure.dsn.startswith("5"))
        return soft and not self.final_server

    def _finish_clock(self) -> None:
        if self._setup_done is None:
            self._setup_done = self._clock()
        self._done = self._clock()

    def _decide(self, seq: int, failure: Failure) -> None:
        status = DEFERRED if failure.soft or not failure.dsn.startswith("5") else BOUNCED
        dsn = failure.dsn if failure.dsn[:1] in ("4", "5") else "4.0.0"
        self._give(RecipientResult(seq, status, dsn, sanitize(failure.reason), failure.relay))

    def _give(self, result: RecipientResult) -> None:
        if result.seq not in self.pending:
            return
        del self.pending[result.seq]
        self._marked.discard(result.seq)
        self.results[result.seq] = result
