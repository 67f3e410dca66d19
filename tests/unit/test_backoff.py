"""Backoff, queue lifetime, delay warning and feedback parsing (Postfix's qmgr rules)."""

from __future__ import annotations

import pytest

from mailcore.scheduler import (
    Feedback,
    backoff,
    delay_warning_due,
    expired,
    parse_feedback,
    queue_lifetime,
)


def test_backoff_doubles_between_the_bounds() -> None:
    # Each retry happens `wait` after the previous one; the age then doubles.
    minimal, maximal = 300.0, 4000.0
    age, waits = 0.0, []
    for _ in range(8):
        wait = backoff(age, minimal, maximal)
        waits.append(wait)
        age += wait
    assert waits == [300, 300, 600, 1200, 2400, 4000, 4000, 4000]


@pytest.mark.parametrize(
    ("age", "expected"), [(-5, 300), (0, 300), (299.5, 300), (301, 301), (3999, 3999),
                          (4001, 4000), (10**9, 4000)],
)
def test_backoff_bounds(age: float, expected: float) -> None:
    assert backoff(age, 300, 4000) == expected


def test_backoff_minimum_wins_when_bounds_cross() -> None:
    assert backoff(50, 600, 100) == 600


def test_lifetime_by_sender() -> None:
    assert queue_lifetime("a@example.com", 5 * 86400, 3600) == 5 * 86400
    assert queue_lifetime("", 5 * 86400, 3600) == 3600


def test_expiry_boundary_and_zero_lifetime() -> None:
    assert not expired(now=1099.9, create_time=100, lifetime=1000)
    assert expired(now=1100, create_time=100, lifetime=1000)
    # lifetime 0: the first deferral already returns the message (one attempt only)
    assert expired(now=100, create_time=100, lifetime=0)


def test_delay_warning_once_and_disabled() -> None:
    assert not delay_warning_due(1000, 0, 0, warned=False)  # 0 disables
    assert not delay_warning_due(3598, 0, 3600, warned=False)
    assert delay_warning_due(3599, 0, 3600, warned=False)  # Postfix fires 1 s early
    assert not delay_warning_due(10**6, 0, 3600, warned=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Feedback(1.0)),
        ("0.5", Feedback(0.5)),
        ("1/8", Feedback(0.125)),
        ("1 / 4", Feedback(0.25)),
        ("1/concurrency", Feedback(1.0, per_window=True)),
        ("2", None),
        ("3/2", None),
        ("1/0", None),
        ("1/sqrt_concurrency", None),
        ("x", None),
        ("", None),
    ],
)
def test_parse_feedback(text: str, expected: Feedback | None) -> None:
    assert parse_feedback(text) == expected


def test_feedback_value_per_window() -> None:
    assert Feedback(1.0, per_window=True).value(4) == 0.25
    assert Feedback(0.5).value(4) == 0.5
