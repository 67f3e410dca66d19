"""Who is told what: DSN NOTIFY filtering, notify_classes, double bounces and soft_bounce.

Owns: the decisions bounce(8) makes before it writes a notice — which recipients a sender
notice lists (NOTIFY=SUCCESS/FAILURE/DELAY/NEVER; no NOTIFY means FAILURE,DELAY), whether a
failed notice becomes a double bounce to 2bounce_notice_recipient (at most once: a failed
double bounce is dropped), which postmaster copies notify_classes asks for, and how
soft_bounce turns a bounce into a deferral.

Must not: format messages, read the queue or do any other I/O.

Invariants: a notice's envelope sender is "" (to a message's sender) or the double-bounce
address (to postmaster), never anything else, so no notice can start a bounce loop; a
message whose sender is the double-bounce address never produces a notice.

Reads main.cf: myhostname, myorigin, mail_name, bounce_size_limit, delay_warning_time,
maximal_queue_lifetime, notify_classes, bounce_notice_recipient, 2bounce_notice_recipient,
delay_notice_recipient, error_notice_recipient, double_bounce_sender, soft_bounce.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from mailcore.config import Config
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, RecipientResult
from mailcore.queue.types import QueuedMessage, QueuedRecipient

BOUNCE = "bounce"
DELAY = "delay"
SUCCESS = "success"
KINDS: tuple[str, ...] = (BOUNCE, DELAY, SUCCESS)

FULL = "FULL"
HDRS = "HDRS"

# Postfix's mail_error classes (notify_classes accepts every one of them).
ERROR_CLASSES: frozenset[str] = frozenset(
    {"bounce", "2bounce", "data", "delay", "policy", "protocol", "resource", "software"}
)
SOFTBOUNCE = "SOFTBOUNCE"  # the maillog status word Postfix writes under soft_bounce

_NOTIFY_WORD = {BOUNCE: "FAILURE", DELAY: "DELAY", SUCCESS: "SUCCESS"}
_DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})  # RFC 3461 4.1 when NOTIFY is absent


@dataclass(frozen=True)
class BounceSettings:
    myhostname: str
    myorigin: str
    mail_name: str = "mailcore"
    bounce_size_limit: int = 50000
    delay_warning_time: float = 0.0
    maximal_queue_lifetime: float = 5 * 86400.0
    notify_classes: frozenset[str] = frozenset({"resource", "software"})
    bounce_notice_recipient: str = "postmaster"
    twobounce_notice_recipient: str = "postmaster"
    delay_notice_recipient: str = "postmaster"
    error_notice_recipient: str = "postmaster"
    double_bounce_sender: str = "double-bounce"
    soft_bounce: bool = False

    def qualify(self, address: str) -> str:
        """An address as cleanup would write it: ``user`` becomes ``user@$myorigin``."""
        return address if "@" in address else f"{address}@{self.myorigin}"

    @property
    def double_bounce_address(self) -> str:
        return self.qualify(self.double_bounce_sender)

    @property
    def mailer_daemon(self) -> str:
        return self.qualify("MAILER-DAEMON")


def parse_notify_classes(words: Iterable[str], *, file: str | None = None,
                         line: int | None = None) -> frozenset[str]:
    """notify_classes words, lower-cased; an unknown word is a configuration error."""
    classes = frozenset(word.lower() for word in words)
    unknown = sorted(classes - ERROR_CLASSES)
    if unknown:
        raise ConfigError(
            f"parameter notify_classes: unknown class {unknown[0]!r} (expected "
            f"{', '.join(sorted(ERROR_CLASSES))})", file=file, line=line)
    return classes


def bounce_settings(config: Config) -> BounceSettings:
    origin = config.origins.get("notify_classes")
    return BounceSettings(
        myhostname=config.get("myhostname"),
        myorigin=config.get("myorigin") or config.get("myhostname"),
        mail_name=config.get("mail_name"),
        bounce_size_limit=config.get_size("bounce_size_limit"),
        delay_warning_time=config.get_time("delay_warning_time", "h"),
        maximal_queue_lifetime=config.get_time("maximal_queue_lifetime", "d"),
        notify_classes=parse_notify_classes(
            config.get_list("notify_classes"),
            file=origin.file if origin else None, line=origin.line if origin else None),
        bounce_notice_recipient=config.get("bounce_notice_recipient"),
        twobounce_notice_recipient=config.get("2bounce_notice_recipient"),
        delay_notice_recipient=config.get("delay_notice_recipient"),
        error_notice_recipient=config.get("error_notice_recipient"),
        double_bounce_sender=config.get("double_bounce_sender"),
        soft_bounce=config.get_bool("soft_bounce"),
    )


# --------------------------------------------------------------------------- NOTIFY


def notify_words(notify: str | None) -> frozenset[str]:
    """The NOTIFY keywords in force for one recipient (NEVER gives the empty set)."""
    if notify is None or not notify.strip():
        return _DEFAULT_NOTIFY
    words = frozenset(w.strip().upper() for w in notify.split(",") if w.strip())
    return frozenset() if "NEVER" in words else words


def sender_wants(kind: str, notify: str | None) -> bool:
    """Does a recipient with this NOTIFY value want the sender told about ``kind``?"""
    return _NOTIFY_WORD[kind] in notify_words(notify)


# --------------------------------------------------------------------------- soft_bounce


def apply_soft_bounce(result: RecipientResult, soft_bounce: bool) -> tuple[RecipientResult, str]:
    """(the result to record, the maillog status word) for one delivery outcome.

    Under soft_bounce a permanent failure is kept in the queue as a deferral: status class 5
    becomes 4 and the log says status=SOFTBOUNCE, as Postfix's bounce client does."""
    if not soft_bounce or result.status != BOUNCED:
        return result, result.status
    dsn = "4" + result.dsn[1:] if result.dsn[:1] == "5" else result.dsn
    return replace(result, status=DEFERRED, dsn=dsn), SOFTBOUNCE


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class NoticePlan:
    """One notice to write: who gets it, about which recipients, with how much original."""

    kind: str  # BOUNCE, DELAY or SUCCESS
    to: str
    envelope_sender: str  # "" or the double-bounce address
    recipients: tuple[QueuedRecipient, ...]
    ret: str  # FULL or HDRS (bounce_size_limit may still reduce FULL to headers)
    postmaster_copy: bool  # postmaster subject, Auto-Submitted: auto-generated, no boilerplate
    label: str  # maillog words: "sender non-delivery notification", ...
    required: bool  # failing to send it must make the caller retry (else only a warning)


@dataclass(frozen=True)
class Decision:
    notices: tuple[NoticePlan, ...]
    warnings: tuple[str, ...] = ()  # maillog warnings, without the queue ID prefix
    infos: tuple[str, ...] = ()


def is_double_bounce(sender: str, settings: BounceSettings) -> bool:
    lowered = sender.lower()
    return lowered in (settings.double_bounce_address.lower(),
                       settings.double_bounce_sender.lower())


def plan_notices(kind: str, message: QueuedMessage, recipients: Sequence[QueuedRecipient],
                 settings: BounceSettings) -> Decision:
    """The notices bounce(8) would send for ``recipients`` of ``message`` (see module doc)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    rcpts = tuple(recipients)
    if not rcpts:
        return Decision(())
    if kind == SUCCESS:
        return _plan_success(message, rcpts, settings)
    if is_double_bounce(message.sender, settings):
        return Decision((), warnings=("undeliverable postmaster notification discarded",))
    classes = settings.notify_classes
    if kind == BOUNCE:
        postmaster_to = settings.bounce_notice_recipient
        copy_wanted = "bounce" in classes
        double_wanted = bool(classes & {"bounce", "2bounce"})
        double_to = settings.twobounce_notice_recipient
        words = "non-delivery notification"
    else:
        postmaster_to = double_to = settings.delay_notice_recipient
        copy_wanted = double_wanted = "delay" in classes
        words = "delay notification"
    if message.sender == "":
        if not double_wanted:
            return Decision(())
        # The last chance for this mail: postmaster gets every recipient and the original.
        return Decision((NoticePlan(
            kind, settings.qualify(double_to), settings.double_bounce_address, rcpts, FULL,
            True, f"postmaster {words}", True),))
    notices: list[NoticePlan] = []
    wanted = tuple(r for r in rcpts if sender_wants(kind, r.notify))
    if wanted:
        ret = (message.ret or FULL).upper() if kind == BOUNCE else HDRS
        notices.append(NoticePlan(kind, message.sender, "", wanted, ret if ret in (FULL, HDRS)
                                  else FULL, False, f"sender {words}", True))
    if copy_wanted:
        notices.append(NoticePlan(
            kind, settings.qualify(postmaster_to), settings.double_bounce_address, rcpts, HDRS,
            True, f"postmaster {words}", False))
    return Decision(tuple(notices))


def _plan_success(message: QueuedMessage, rcpts: tuple[QueuedRecipient, ...],
                  settings: BounceSettings) -> Decision:
    wanted = tuple(r for r in rcpts if sender_wants(SUCCESS, r.notify))
    if not wanted:
        return Decision(())
    label = "sender delivery status notification"
    if is_double_bounce(message.sender, settings):
        return Decision((), infos=(
            "not sending trace/success notification for double-bounce message",))
    if message.sender == "":
        if "2bounce" not in settings.notify_classes:
            return Decision((), infos=(
                "not sending trace/success notification for single-bounce message",))
        return Decision((NoticePlan(
            SUCCESS, settings.qualify(settings.twobounce_notice_recipient),
            settings.double_bounce_address, wanted, HDRS, False, label, True),))
    return Decision((NoticePlan(SUCCESS, message.sender, "", wanted, HDRS, False, label, True),))


def wants_error_notice(error_classes: Iterable[str], settings: BounceSettings) -> bool:
    """smtpd's rule: send the session transcript when a seen error class is notified."""
    return bool(frozenset(c.lower() for c in error_classes) & settings.notify_classes)
