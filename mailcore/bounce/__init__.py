"""bounce(8): delivery status notifications, double bounces and postmaster notices.

Owns: RFC 3464 DSNs (bounce, delay, success) as Postfix's bounce service writes them
(dsn.py), the rules for who receives which notice — DSN NOTIFY, the null sender, double
bounces at most once, notify_classes postmaster copies, soft_bounce (policy.py) — how much of
the original is returned (original.py), smtpd's error transcript (postmaster.py), and the
async ``Notifier`` the scheduler calls (notifier.py). See docs/bounces.md.

Must not: deliver mail or change the state of the message being reported on.
"""

from mailcore.bounce.dsn import Notice, build_dsn, build_notice, diagnostic, sender_plan
from mailcore.bounce.notifier import Notifier
from mailcore.bounce.original import collect_original, returned_mode
from mailcore.bounce.policy import (
    BOUNCE,
    DELAY,
    ERROR_CLASSES,
    FULL,
    HDRS,
    KINDS,
    SOFTBOUNCE,
    SUCCESS,
    BounceSettings,
    Decision,
    NoticePlan,
    apply_soft_bounce,
    bounce_settings,
    is_double_bounce,
    notify_words,
    parse_notify_classes,
    plan_notices,
    sender_wants,
    wants_error_notice,
)
from mailcore.bounce.postmaster import build_error_notice

__all__ = [
    "BOUNCE",
    "DELAY",
    "ERROR_CLASSES",
    "FULL",
    "HDRS",
    "KINDS",
    "SOFTBOUNCE",
    "SUCCESS",
    "BounceSettings",
    "Decision",
    "Notice",
    "NoticePlan",
    "Notifier",
    "apply_soft_bounce",
    "bounce_settings",
    "build_dsn",
    "build_error_notice",
    "build_notice",
    "collect_original",
    "diagnostic",
    "is_double_bounce",
    "notify_words",
    "parse_notify_classes",
    "plan_notices",
    "returned_mode",
    "sender_plan",
    "sender_wants",
    "wants_error_notice",
]
