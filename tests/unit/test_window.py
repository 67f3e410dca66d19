"""The per-destination concurrency window: slow start, feedback, dead and paused states."""

from __future__ import annotations

from mailcore.scheduler import DEAD, READY, SUSPENDED, DestinationWindow, Feedback, WindowSettings


def grow(window: DestinationWindow, times: int, busy_of=lambda w: w.window) -> list[int]:
    seen = []
    for _ in range(times):
        window.positive(busy_of(window))
        seen.append(window.window)
    return seen


def test_starts_at_initial_and_grows_one_per_success_up_to_limit() -> None:
    window = DestinationWindow(WindowSettings(initial=5, limit=8))
    assert window.window == 5 and window.can_start(4) and not window.can_start(5)
    assert grow(window, 5) == [6, 7, 8, 8, 8]


def test_growth_needs_actual_concurrency() -> None:
    # Postfix only grows while window < busy + initial: idle destinations stay small.
    window = DestinationWindow(WindowSettings(initial=2, limit=20))
    assert grow(window, 5, busy_of=lambda w: 0) == [2, 2, 2, 2, 2]


def test_initial_is_capped_by_limit() -> None:
    assert DestinationWindow(WindowSettings(initial=5, limit=2)).window == 2
    assert DestinationWindow(WindowSettings(initial=5, limit=0)).window == 5


def test_per_window_positive_feedback_is_slower() -> None:
    window = DestinationWindow(
        WindowSettings(initial=4, limit=20, positive=Feedback(1.0, per_window=True))
    )
    # 1/4 per success: four successes for one step
    assert grow(window, 4) == [4, 4, 4, 5]


def test_negative_feedback_shrinks_and_failed_cohorts_kill() -> None:
    window = DestinationWindow(WindowSettings(initial=5, limit=20, cohort_limit=1,
                                              retry_delay=300))
    # Postfix's arithmetic: the first failure of a fresh window takes two steps (5 → 3),
    # later ones one; cohorts 1/5 + 1/3 + 1/2 reach 1 on the third failure → dead.
    sizes, results = [], []
    for _ in range(3):
        results.append(window.negative(1000.0, "4.4.1", "connect refused"))
        sizes.append(window.window)
    assert results == [False, False, True]
    assert sizes[:2] == [3, 2]
    assert window.state == DEAD
    assert window.dead_reason == ("4.4.1", "connect refused")
    assert not window.can_start(0)
    assert window.deadline() == 1300.0
    window.tick(1299.0, 0)
    assert window.state == DEAD
    window.tick(1300.0, 0)
    assert (window.state, window.window) == (READY, 5)
    assert window.dead_reason is None


def test_fractional_negative_feedback() -> None:
    window = DestinationWindow(WindowSettings(initial=8, limit=20, cohort_limit=0,
                                              negative=Feedback(1 / 8)))
    sizes = []
    for _ in range(9):
        window.negative(0.0, "4.4.1", "x")
        sizes.append(window.window)
    # shrink at the start of a cycle (Postfix allows half a step of slack); never dead
    assert sizes == [7, 7, 7, 7, 7, 7, 7, 6, 6]
    assert window.state == READY


def test_success_resets_cohorts_and_revives() -> None:
    window = DestinationWindow(WindowSettings(initial=2, limit=20, cohort_limit=1))
    window.negative(0.0, "4.4.1", "x")  # 1/2
    window.positive(1)  # resets the cohort count
    assert window.negative(0.0, "4.4.1", "x") is False  # 1/2 again, not 1
    assert window.negative(0.0, "4.4.1", "x") is True  # window 1: +1 → dead
    window.positive(3)  # a late success revives at what is running
    assert (window.state, window.window) == (READY, 3)


def test_rate_delay_pauses_between_deliveries_with_window_one() -> None:
    window = DestinationWindow(WindowSettings(initial=5, limit=20, rate_delay=10))
    assert window.window == 1
    window.positive(1)
    assert window.window == 1  # the limit is 1 with a rate delay
    window.delivery_done(100.0)
    assert window.state == SUSPENDED and not window.can_start(0)
    assert window.deadline() == 110.0
    window.tick(109.0, 0)
    assert window.state == SUSPENDED
    window.tick(110.0, 0)
    assert window.state == READY and window.can_start(0)


def test_rate_limited_destination_is_paused_not_dead() -> None:
    window = DestinationWindow(WindowSettings(initial=1, limit=1, rate_delay=5, cohort_limit=1))
    assert window.negative(0.0, "4.4.1", "x") is True
    window.delivery_done(0.0)
    assert window.state == SUSPENDED


def test_flush_revives() -> None:
    window = DestinationWindow(WindowSettings(initial=1, limit=20, cohort_limit=1))
    window.negative(0.0, "4.4.1", "x")
    assert window.state == DEAD
    window.revive(0)
    assert window.state == READY and window.can_start(0)
