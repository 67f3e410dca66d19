"""The scheduler (Postfix's qmgr): backoff, windows, the queue manager.

Pure policy lives in policy.py and window.py; QueueManager (qmgr.py) and the parts it
delegates to (deliver.py, flush.py, admin.py, finish.py) do I/O only through the injected
queue, resolver, agents, notifier, clock and sleep (their types: ports.py).
See docs/scheduler.md.
"""

from mailcore.scheduler.policy import (
    Feedback,
    backoff,
    delay_warning_due,
    expired,
    parse_feedback,
    queue_lifetime,
)
from mailcore.scheduler.qmgr import Agent, Notifier, QueueManager, Resolver, site_failure
from mailcore.scheduler.settings import (
    SchedulerSettings,
    TransportSettings,
    scheduler_settings,
    transport_settings,
)
from mailcore.scheduler.window import DEAD, READY, SUSPENDED, DestinationWindow, WindowSettings

__all__ = [
    "DEAD",
    "READY",
    "SUSPENDED",
    "Agent",
    "DestinationWindow",
    "Feedback",
    "Notifier",
    "QueueManager",
    "Resolver",
    "SchedulerSettings",
    "TransportSettings",
    "WindowSettings",
    "backoff",
    "delay_warning_due",
    "expired",
    "parse_feedback",
    "queue_lifetime",
    "scheduler_settings",
    "site_failure",
    "transport_settings",
]
