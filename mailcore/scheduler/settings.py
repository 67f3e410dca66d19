"""The scheduler's parameters, read once from a Config snapshot into frozen values.

Owns the mapping from main.cf/master.cf to numbers: global qmgr limits and timers, and per
transport the recipient limit, process limit (master.cf maxproc) and window settings, with
Postfix's TRANSPORT_* → default_* fallback.

Must not: keep state; a reload builds new settings.

Invariants: a malformed feedback value is reported once as a warning and replaced by 1, as
Postfix does; every other value was type-checked when the Config was built.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.config import Config
from mailcore.scheduler.policy import Feedback, parse_feedback
from mailcore.scheduler.window import WindowSettings


@dataclass(frozen=True)
class TransportSettings:
    name: str
    recipient_limit: int  # TRANSPORT_destination_recipient_limit; 0 = no limit
    process_limit: int  # master.cf maxproc (or default_process_limit); 0 = no limit
    window: WindowSettings


@dataclass(frozen=True)
class SchedulerSettings:
    active_limit: int  # qmgr_message_active_limit
    recipient_limit: int  # qmgr_message_recipient_limit
    queue_run_delay: float
    minimal_backoff: float
    maximal_backoff: float
    maximal_queue_lifetime: float
    bounce_queue_lifetime: float
    delay_warning_time: float
    defer_transports: frozenset[str]


def scheduler_settings(config: Config) -> SchedulerSettings:
    return SchedulerSettings(
        active_limit=max(1, config.get_int("qmgr_message_active_limit")),
        recipient_limit=max(1, config.get_int("qmgr_message_recipient_limit")),
        queue_run_delay=config.get_time("queue_run_delay"),
        minimal_backoff=config.get_time("minimal_backoff_time"),
        maximal_backoff=config.get_time("maximal_backoff_time"),
        maximal_queue_lifetime=config.get_time("maximal_queue_lifetime", "d"),
        bounce_queue_lifetime=config.get_time("bounce_queue_lifetime", "d"),
        delay_warning_time=config.get_time("delay_warning_time", "h"),
        defer_transports=frozenset(config.get_list("defer_transports")),
    )


def transport_settings(config: Config, transport: str, warnings: list[str]) -> TransportSettings:
    """Settings for one transport; malformed feedback values append to ``warnings``."""

    def value(suffix: str) -> str:
        return config.transport_param(transport, suffix)

    service = config.master.transports().get(transport)
    maxproc = service.maxproc if service is not None else None
    process_limit = config.get_int("default_process_limit") if maxproc is None else maxproc
    dest_limit = config.get_int(value("_destination_concurrency_limit"))
    limits = [n for n in (dest_limit, process_limit) if n > 0]
    window = WindowSettings(
        initial=max(1, config.get_int(value("_initial_destination_concurrency"))),
        limit=min(limits) if limits else 0,
        positive=_feedback(config, value("_destination_concurrency_positive_feedback"),
                           warnings),
        negative=_feedback(config, value("_destination_concurrency_negative_feedback"),
                           warnings),
        cohort_limit=config.get_int(value("_destination_concurrency_failed_cohort_limit")),
        retry_delay=config.get_time("minimal_backoff_time"),
        rate_delay=config.get_time(value("_destination_rate_delay")),
    )  # fmt: skip
    return TransportSettings(
        name=transport,
        recipient_limit=config.get_int(value("_destination_recipient_limit")),
        process_limit=process_limit,
        window=window,
    )


def _feedback(config: Config, name: str, warnings: list[str]) -> Feedback:
    text = config.get(name)
    parsed = parse_feedback(text)
    if parsed is None:
        warnings.append(f"{name}: ignoring malformed or unreasonable feedback: {text}")
        return Feedback(1.0)
    return parsed
