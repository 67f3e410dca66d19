"""The per-destination concurrency window: Postfix qmgr's slow start, feedback and dead
destinations, as a small state machine without I/O.

Owns one destination's (transport + nexthop) window: how many deliveries may run at once,
its growth on success (positive feedback) and shrinkage on failure (negative feedback), the
failed pseudo-cohort count that declares the destination dead, and the rate-delay pause.

Must not: read clocks, start deliveries or touch the queue. Callers pass ``now`` and the
number of deliveries in flight (``busy``); the scheduler turns the deadlines it reads
(``dead_until``, ``suspended_until``) into timers.

Invariants: ``window`` >= 1 while the destination is ready; a dead destination keeps the
reason it died with (``dead_reason``) until it is revived; a suspended one resumes with a
window of 1. With a rate delay the limit is 1, as in Postfix.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.scheduler.policy import Feedback

ONE = Feedback(1.0)  # Postfix's default feedback: one window step per delivery

READY = "ready"
DEAD = "dead"  # Postfix: throttled; mail is deferred without a connection until revived
SUSPENDED = "suspended"  # destination_rate_delay pause between two deliveries


@dataclass(frozen=True)
class WindowSettings:
    """One transport's window parameters (TRANSPORT_* falling back to default_*)."""

    initial: int = 5  # initial_destination_concurrency
    limit: int = 20  # min(destination_concurrency_limit, maxproc); 0 = no limit
    positive: Feedback = ONE
    negative: Feedback = ONE
    cohort_limit: int = 1  # destination_concurrency_failed_cohort_limit; 0 = never dead
    retry_delay: float = 300.0  # a dead destination is retried after minimal_backoff_time
    rate_delay: float = 0.0  # destination_rate_delay

    @property
    def effective_limit(self) -> int:
        return 1 if self.rate_delay > 0 else self.limit

    @property
    def effective_initial(self) -> int:
        limit = self.effective_limit
        return self.initial if limit == 0 or limit >= self.initial else limit


class DestinationWindow:
    """Concurrency state of one destination; see Postfix's qmgr_queue.c for the model."""

    def __init__(self, settings: WindowSettings) -> None:
        self.settings = settings
        self.window = max(1, settings.effective_initial)
        self.state = READY
        self.success = 0.0
        self.failure = 0.0
        self.fail_cohorts = 0.0
        self.dead_until: float | None = None
        self.dead_reason: tuple[str, str] | None = None  # (dsn, reason) while dead
        self.suspended_until: float | None = None

    def can_start(self, busy: int) -> bool:
        """May one more delivery start, with ``busy`` already running?"""
        return self.state == READY and self.window > busy

    def positive(self, busy: int) -> None:
        """A delivery ended without trouble at the destination: grow, or revive if dead."""
        self.fail_cohorts = 0.0
        if self.state == DEAD:
            self._revive(busy)
            return
        if self.state != READY:
            return
        limit = self.settings.effective_limit
        if (limit == 0 or limit > self.window) and (
            self.window < busy + self.settings.effective_initial
        ):
            feedback = self.settings.positive.value(self.window)
            self.success += feedback
            # A loop, because one feedback may exceed a whole step (and rounding).
            while self.success + feedback / 2 >= 1:
                self.window += 1
                self.success -= 1
                self.failure = 0.0
            if limit > 0 and self.window > limit:
                self.window = limit

    def negative(self, now: float, dsn: str, reason: str) -> bool:
        """A delivery failed at the destination (could not connect, lost the session, ...).

        Returns True when this failure declared the destination dead."""
        if self.state != READY:
            return False
        self.fail_cohorts += 1.0 / self.window
        limit = self.settings.cohort_limit
        if limit > 0 and self.fail_cohorts >= limit:
            self.state = DEAD
            self.dead_until = now + self.settings.retry_delay
            self.dead_reason = (dsn, reason)
            return True
        feedback = self.settings.negative.value(self.window)
        self.failure -= feedback
        # Unlike growth, shrinking happens at the start of a feedback cycle.
        while self.failure - feedback / 2 < 0:
            self.window -= 1
            self.success = 0.0
            self.failure += 1
        self.window = max(self.window, 1)
        return False

    def delivery_done(self, now: float) -> None:
        """After every delivery on a rate-limited transport: pause before the next one.

        As in Postfix, a rate-limited destination is not left dead: it is revived and paused
        instead, so its mail trickles out at the configured rate."""
        if self.settings.rate_delay <= 0:
            return
        if self.state == DEAD:
            self._revive(0)
        if self.state == READY:
            self.state = SUSPENDED
            self.suspended_until = now + self.settings.rate_delay

    def tick(self, now: float, busy: int) -> None:
        """Let the timers run out: resume a paused destination, revive a dead one."""
        if self.state == SUSPENDED and self.suspended_until is not None:
            if now >= self.suspended_until:
                self.state = READY
                self.window = 1
                self.suspended_until = None
        elif self.state == DEAD and self.dead_until is not None and now >= self.dead_until:
            self.fail_cohorts = 0.0
            self._revive(busy)

    def revive(self, busy: int) -> None:
        """A flush: give a dead destination another chance now."""
        if self.state == DEAD:
            self.fail_cohorts = 0.0
            self._revive(busy)

    def deadline(self) -> float | None:
        """When ``tick`` will next change something, if ever."""
        if self.state == SUSPENDED:
            return self.suspended_until
        if self.state == DEAD:
            return self.dead_until
        return None

    def _revive(self, busy: int) -> None:
        # Back from the dead the best concurrency is a guess: what is running, else initial.
        self.state = READY
        self.window = busy if busy > 0 else max(1, self.settings.effective_initial)
        self.success = self.failure = 0.0
        self.dead_until = None
        self.dead_reason = None
