"""Retry policy as plain functions: backoff, queue lifetime, delay warnings, feedback values.

Owns the arithmetic qmgr applies when a message has been tried: how long a deferred message
waits, when it has been queued too long and is returned, when its one delay notice is due,
and how a concurrency feedback setting ("1", "1/8", "1/concurrency") is read.

Must not: read the clock, the configuration or the queue; callers pass numbers in.

Invariants: every function is total over its documented inputs and returns the same answer
for the same arguments. Parameters: minimal_backoff_time, maximal_backoff_time,
maximal_queue_lifetime, bounce_queue_lifetime, delay_warning_time,
*_destination_concurrency_{positive,negative}_feedback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def backoff(age: float, minimal: float, maximal: float) -> float:
    """Seconds until a deferred message is tried again.

    Postfix (qmgr_active.c) waits as long as the message has already been in the queue,
    clamped to [minimal_backoff_time, maximal_backoff_time]. Since each retry happens about
    ``age`` later, the wait doubles from attempt to attempt until it reaches the maximum.
    A message with no known age (``age`` < 0) waits the minimum. When the two limits cross
    (maximal < minimal) the minimum wins, as Postfix applies it last."""
    if age < 0:
        return minimal
    return max(min(age, maximal), minimal)


def queue_lifetime(sender: str, maximal_queue_lifetime: float, bounce_queue_lifetime: float
                   ) -> float:
    """How long a message may stay queued: bounce_queue_lifetime for null-sender mail
    (bounces and other notices), maximal_queue_lifetime otherwise."""
    return bounce_queue_lifetime if sender == "" else maximal_queue_lifetime


def expired(now: float, create_time: float, lifetime: float) -> bool:
    """True when a message that was just deferred must be returned to its sender instead.

    Postfix compares with >=, so a lifetime of 0 means exactly one delivery attempt."""
    return now >= create_time + lifetime


def delay_warning_due(now: float, arrival_time: float, delay_warning_time: float,
                      warned: bool) -> bool:
    """True when the one delay notice should go out now (delay_warning_time 0 disables it).

    Postfix fires one second early so that a retry landing exactly on the boundary counts."""
    if warned or delay_warning_time <= 0:
        return False
    return now >= arrival_time + delay_warning_time - 1


@dataclass(frozen=True)
class Feedback:
    """A concurrency feedback amount: ``base``, divided by the window when ``per_window``."""

    base: float
    per_window: bool = False

    def value(self, window: int) -> float:
        return self.base / window if self.per_window and window > 0 else self.base


_FEEDBACK = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*(\S+)\s*)?$")
_WINDOW_NAMES = ("concurrency",)
_INT_MAX = 2**31 - 1


def parse_feedback(text: str) -> Feedback | None:
    """Read "N", "N/M" or "N/concurrency"; None when the value is malformed or outside 0..1
    (Postfix then warns and uses 1)."""
    match = _FEEDBACK.match(text)
    if not match:
        return None
    number = float(match.group(1))
    denominator = match.group(2)
    if denominator is None:
        feedback = Feedback(number)
    elif denominator in _WINDOW_NAMES:
        feedback = Feedback(number, per_window=True)
    else:
        try:
            divisor = float(denominator)
        except ValueError:
            return None
        if not (0 <= number <= _INT_MAX and 1 / _INT_MAX <= divisor <= _INT_MAX):
            return None
        feedback = Feedback(number / divisor)
    return feedback if 0 <= feedback.base <= 1 else None
