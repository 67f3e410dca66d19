"""Who gets which notice: NOTIFY, null sender and double bounces, notify_classes,
soft_bounce, and the async Notifier with a fake queue and a real MailLog.

Sources: RFC 3461 4.1 (NOTIFY; absent means FAILURE,DELAY), Postfix bounce_notify_service.c,
bounce_warn_service.c, bounce_trace_service.c, global/bounce.c (soft_bounce), smtpd_chat.c."""

from __future__ import annotations

import email
import email.policy
import io
from collections.abc import AsyncIterator

import pytest
from test_bounce_support import NOW, ORIGINAL, message, parse, rcpt, settings

from mailcore.bounce import (
    BOUNCE,
    DELAY,
    FULL,
    HDRS,
    SOFTBOUNCE,
    SUCCESS,
    Notifier,
    apply_soft_bounce,
    bounce_settings,
    build_error_notice,
    notify_words,
    plan_notices,
    sender_wants,
    wants_error_notice,
)
from mailcore.config import from_mapping, load_config
from mailcore.errors import ConfigError
from mailcore.log import MailLog
from mailcore.model import BOUNCED, DEFERRED, SENT, RecipientResult
from mailcore.queue.types import NewMessage, QueuedMessage, QueueReadError, QueueWriteError

PM = frozenset({"bounce", "2bounce", "delay"})


# --------------------------------------------------------------------------- NOTIFY


@pytest.mark.parametrize(("notify", "words"), [
    (None, {"FAILURE", "DELAY"}), ("", {"FAILURE", "DELAY"}), ("NEVER", set()),
    ("SUCCESS", {"SUCCESS"}), ("success,failure", {"SUCCESS", "FAILURE"}),
    ("FAILURE,DELAY,SUCCESS", {"FAILURE", "DELAY", "SUCCESS"}),
])
def test_notify_words(notify: str | None, words: set[str]) -> None:
    assert notify_words(notify) == words


def test_sender_notices_follow_notify() -> None:
    rs = [rcpt(1, "a@x.example"), rcpt(2, "b@x.example", notify="FAILURE"),
          rcpt(3, "c@x.example", notify="NEVER"), rcpt(4, "d@x.example", notify="DELAY"),
          rcpt(5, "e@x.example", notify="SUCCESS"), rcpt(6, "f@x.example", notify="SUCCESS,DELAY")]
    m = message(*rs)
    s = settings(notify_classes=frozenset())
    seqs = {kind: [r.seq for n in plan_notices(kind, m, rs, s).notices for r in n.recipients]
            for kind in (BOUNCE, DELAY, SUCCESS)}
    assert seqs == {BOUNCE: [1, 2], DELAY: [1, 4, 6], SUCCESS: [5, 6]}
    assert sender_wants(SUCCESS, "SUCCESS") and not sender_wants(SUCCESS, None)


def test_no_notice_when_nobody_wants_one() -> None:
    rs = [rcpt(1, notify="NEVER"), rcpt(2, notify="SUCCESS")]
    assert plan_notices(BOUNCE, message(*rs), rs, settings()).notices == ()


def test_plain_bounce_plan() -> None:
    (plan,) = plan_notices(BOUNCE, message(ret="HDRS"), [rcpt()], settings()).notices
    assert (plan.to, plan.envelope_sender, plan.ret, plan.postmaster_copy, plan.required) == (
        "alice@example.org", "", HDRS, False, True)
    (delay,) = plan_notices(DELAY, message(ret="FULL"), [rcpt()], settings()).notices
    assert delay.ret == HDRS and delay.label == "sender delay notification"


# --------------------------------------------------------------------------- double bounce


def test_null_sender_bounce_becomes_double_bounce_to_2bounce_recipient() -> None:
    rs = [rcpt(1, notify="NEVER"), rcpt(2, "c@x.example")]
    s = settings(notify_classes=frozenset({"2bounce"}), twobounce_notice_recipient="hostmaster")
    (plan,) = plan_notices(BOUNCE, message(*rs, sender=""), rs, s).notices
    assert plan.to == "hostmaster@example.org"
    assert plan.envelope_sender == "double-bounce@example.org"
    assert plan.ret == FULL and plan.postmaster_copy and plan.required
    assert [r.seq for r in plan.recipients] == [1, 2]  # NOTIFY does not apply
    assert plan.label == "postmaster non-delivery notification"


def test_null_sender_bounce_dropped_without_bounce_classes() -> None:
    s = settings(notify_classes=frozenset({"delay", "resource"}))
    assert plan_notices(BOUNCE, message(sender=""), [rcpt()], s).notices == ()


@pytest.mark.parametrize("kind", [BOUNCE, DELAY])
def test_failed_double_bounce_is_discarded(kind: str) -> None:
    s = settings(notify_classes=PM)
    for sender in ("double-bounce@example.org", "Double-Bounce@EXAMPLE.org"):
        decision = plan_notices(kind, message(sender=sender), [rcpt()], s)
        assert decision.notices == ()
        assert decision.warnings == ("undeliverable postmaster notification discarded",)


def test_null_sender_delay_goes_to_delay_recipient_only_with_delay_class() -> None:
    m = message(sender="")
    assert plan_notices(DELAY, m, [rcpt()], settings(notify_classes=frozenset())).notices == ()
    s = settings(notify_classes=frozenset({"delay"}), delay_notice_recipient="ops@example.net")
    (plan,) = plan_notices(DELAY, m, [rcpt()], s).notices
    assert (plan.to, plan.envelope_sender, plan.ret) == (
        "ops@example.net", "double-bounce@example.org", FULL)


def test_success_notice_rules_for_bounce_senders() -> None:
    r = rcpt(notify="SUCCESS", status="sent", dsn="2.0.0")
    none = plan_notices(SUCCESS, message(r, sender=""), [r], settings())
    assert none.notices == () and "single-bounce" in none.infos[0]
    (plan,) = plan_notices(SUCCESS, message(r, sender=""), [r],
                           settings(notify_classes=frozenset({"2bounce"}))).notices
    assert plan.to == "postmaster@example.org"
    assert plan.envelope_sender == "double-bounce@example.org"
    dropped = plan_notices(SUCCESS, message(r, sender="double-bounce@example.org"), [r],
                           settings(notify_classes=PM))
    assert dropped.notices == () and "double-bounce" in dropped.infos[0]


# --------------------------------------------------------------------------- notify_classes


def test_bounce_class_adds_postmaster_copy_with_headers_only() -> None:
    rs = [rcpt(1, notify="NEVER"), rcpt(2, "c@x.example")]
    s = settings(notify_classes=frozenset({"bounce"}), bounce_notice_recipient="pm")
    sender_notice, copy = plan_notices(BOUNCE, message(*rs, ret="FULL"), rs, s).notices
    assert [r.seq for r in sender_notice.recipients] == [2]
    assert copy.to == "pm@example.org" and copy.envelope_sender == "double-bounce@example.org"
    assert copy.ret == HDRS and copy.postmaster_copy and not copy.required
    assert [r.seq for r in copy.recipients] == [1, 2]
    # The copy is sent even when no recipient wanted a sender notice.
    (only,) = plan_notices(BOUNCE, message(rs[0]), rs[:1], s).notices
    assert only.postmaster_copy


def test_2bounce_class_alone_sends_no_copy_of_single_bounces() -> None:
    s = settings(notify_classes=frozenset({"2bounce"}))
    (plan,) = plan_notices(BOUNCE, message(), [rcpt()], s).notices
    assert not plan.postmaster_copy


def test_delay_class_adds_postmaster_warning() -> None:
    s = settings(notify_classes=frozenset({"delay"}), delay_notice_recipient="ops")
    _, copy = plan_notices(DELAY, message(), [rcpt(notify="NEVER"), rcpt(2)],
                           s).notices
    assert copy.to == "ops@example.org" and copy.label == "postmaster delay notification"
    assert plan_notices(BOUNCE, message(), [rcpt()], s).notices[-1].postmaster_copy is False


def test_bounce_settings_from_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = from_mapping({"myhostname": "mx.example.org", "mydomain": "example.org",
                      "myorigin": "$mydomain", "notify_classes": "Bounce, 2bounce",
                      "delay_warning_time": "4", "maximal_queue_lifetime": "2",
                      "2bounce_notice_recipient": "dbl", "soft_bounce": "yes"})
    s = bounce_settings(c)
    assert s.myorigin == "example.org" and s.notify_classes == {"bounce", "2bounce"}
    assert s.delay_warning_time == 4 * 3600 and s.maximal_queue_lifetime == 2 * 86400
    assert s.twobounce_notice_recipient == "dbl" and s.soft_bounce
    defaults = bounce_settings(from_mapping({"myhostname": "mx.example.org"}))
    assert defaults.notify_classes == {"resource", "software"}
    assert defaults.bounce_size_limit == 50000 and not defaults.soft_bounce
    (tmp_path / "main.cf").write_text("myhostname = mx.example.org\n\n"
                                      "notify_classes = bounce, bogus\n")
    with pytest.raises(ConfigError) as err:
        bounce_settings(load_config(tmp_path))
    assert err.value.line == 3 and "bogus" in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "main.cf"))


# --------------------------------------------------------------------------- soft_bounce


def test_soft_bounce_turns_bounce_into_deferral() -> None:
    bounced = RecipientResult(1, BOUNCED, "5.1.1", "550 5.1.1 unknown", "mx[192.0.2.1]:25")
    kept, word = apply_soft_bounce(bounced, True)
    assert (kept.status, kept.dsn, word) == (DEFERRED, "4.1.1", SOFTBOUNCE)
    assert kept.reason == bounced.reason and kept.relay == bounced.relay
    assert apply_soft_bounce(bounced, False) == (bounced, BOUNCED)
    sent = RecipientResult(2, SENT, "2.0.0", "250 ok")
    assert apply_soft_bounce(sent, True) == (sent, SENT)
    deferred = RecipientResult(3, DEFERRED, "4.4.1", "timeout")
    assert apply_soft_bounce(deferred, True) == (deferred, DEFERRED)


# --------------------------------------------------------------------------- error notices


def test_error_notice() -> None:
    s = settings(notify_classes=frozenset({"protocol", "resource"}),
                 error_notice_recipient="abuse")
    assert wants_error_notice(["protocol"], s) and not wants_error_notice(["policy"], s)
    transcript = ["In:  EHLO client.example", "Out: 250-mx.example.org",
                  "In:  MAIL FROM:<x@y>\x00\x1b", "Out: 501 5.5.4 Syntax error " + "z " * 60]
    notice = build_error_notice("client.example[192.0.2.9]", transcript, "too many errors", s,
                                NOW)
    assert notice.sender == "double-bounce@example.org"
    assert notice.recipients == ("abuse@example.org",)
    msg = email.message_from_bytes(notice.content, policy=email.policy.default)
    assert msg["Subject"] == "mailcore SMTP server: errors from client.example[192.0.2.9]"
    assert msg["To"].addresses[0].addr_spec == "abuse@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert " In:  MAIL FROM:<x@y>??" in body
    lines = body.splitlines()
    start = lines.index(" In:  EHLO client.example")
    assert all(line.startswith(" ") and len(line) <= 79 for line in lines[start:start + 5])
    assert "too many errors" in body
    assert notice.content.isascii()


# --------------------------------------------------------------------------- Notifier


class FakeQueue:
    """enqueue/read_content stand-ins: records messages, counts chunks actually read."""

    def __init__(self, content: bytes = ORIGINAL, chunk: int = 16):
        self.content = content
        self.chunk = chunk
        self.enqueued: list[NewMessage] = []
        self.read = 0
        self.fail_for: set[str] = set()
        self.missing = False

    async def enqueue(self, msg: NewMessage) -> str:
        if msg.recipients[0].address in self.fail_for:
            raise QueueWriteError("disk full")
        self.enqueued.append(msg)
        return f"NEW{len(self.enqueued)}"

    async def read_content(self, queue_id: str) -> AsyncIterator[bytes]:
        if self.missing:
            raise QueueReadError(f"{queue_id}: no such message in the queue")
        for i in range(0, len(self.content), self.chunk):
            self.read += 1
            yield self.content[i:i + self.chunk]


def make_notifier(q: FakeQueue, **overrides: object) -> tuple[Notifier, io.StringIO]:
    stream = io.StringIO()
    log = MailLog(hostname="mx.example.org", stream=stream, clock=lambda: NOW)
    return Notifier(settings(**overrides), q.enqueue, q.read_content, log,
                    clock=lambda: NOW), stream


def as_queued(new: NewMessage, queue_id: str) -> QueuedMessage:
    """What the queue would hand back for an enqueued notice, bounced in its turn."""
    rs = tuple(rcpt(i + 1, r.address) for i, r in enumerate(new.recipients))
    return message(*rs, sender=new.sender, size=new.size, queue_id=queue_id)


async def test_notifier_bounce_logs_and_enqueues() -> None:
    q = FakeQueue()
    notifier, log = make_notifier(q)
    ids = await notifier.bounced(message(ret="FULL"), [rcpt()])
    assert ids == ["NEW1"]
    (new,) = q.enqueued
    assert new.sender == "" and [r.address for r in new.recipients] == ["alice@example.org"]
    p = parse(new.content)
    assert p.original_type == "message/rfc822"
    assert p.original.get_payload()[0].get_content() == "first body line\nsecond body line\n"
    assert "mailcore/bounce[" in log.getvalue()
    assert log.getvalue().rstrip().endswith("ABC123: sender non-delivery notification: NEW1")


async def test_notifier_streams_only_headers_when_that_is_all_it_needs() -> None:
    body = b"x" * 10_000 + b"\n"
    q = FakeQueue(ORIGINAL + body, chunk=64)
    notifier, _ = make_notifier(q)
    await notifier.delayed(message(size=len(q.content)), [rcpt(status="deferred", dsn="4.4.1")])
    assert q.read <= len(ORIGINAL) // 64 + 2  # stopped at the end of the header block
    assert parse(q.enqueued[0].content).original_type == "text/rfc822-headers"


async def test_double_bounce_at_most_once() -> None:
    q = FakeQueue()
    notifier, log = make_notifier(q, notify_classes=frozenset({"2bounce"}))
    await notifier.bounced(message(), [rcpt()])  # the sender's bounce
    bounce = as_queued(q.enqueued[-1], "B1")
    assert bounce.sender == ""
    ids = await notifier.bounced(bounce, bounce.recipients)  # that bounce bounced
    assert ids == ["NEW2"]
    double = q.enqueued[-1]
    assert double.sender == "double-bounce@example.org"
    assert [r.address for r in double.recipients] == ["postmaster@example.org"]
    assert parse(double.content).msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert "B1: postmaster non-delivery notification: NEW2" in log.getvalue()
    again = as_queued(double, "D1")
    assert await notifier.bounced(again, again.recipients) == []  # never a triple bounce
    assert await notifier.delayed(again, again.recipients) == []
    assert len(q.enqueued) == 2
    assert "warning: D1: undeliverable postmaster notification discarded" in log.getvalue()


async def test_notifier_success_relayed_and_delivered() -> None:
    q = FakeQueue()
    notifier, log = make_notifier(q)
    rs = [rcpt(1, notify="SUCCESS", status="sent", dsn="2.0.0", reason="250 ok"),
          rcpt(2, "c@x.example", notify="SUCCESS", status="sent", dsn="2.0.0",
               reason="delivered to mailbox", relay="local"),
          rcpt(3, "d@x.example", status="sent", dsn="2.0.0", reason="250 ok")]
    assert await notifier.succeeded(message(*rs), rs, actions={1: "relayed"}) == ["NEW1"]
    p = parse(q.enqueued[0].content)
    assert [(f["Final-Recipient"], f["Action"]) for f in p.per_recipient] == [
        ("rfc822; bob@remote.example", "relayed"), ("rfc822; c@x.example", "delivered")]
    assert "ABC123: sender delivery status notification: NEW1" in log.getvalue()


async def test_postmaster_copy_failure_only_warns_but_sender_failure_raises() -> None:
    q = FakeQueue()
    q.fail_for = {"postmaster@example.org"}
    notifier, log = make_notifier(q, notify_classes=frozenset({"bounce"}))
    assert await notifier.bounced(message(), [rcpt()]) == ["NEW1"]
    assert ("warning: ABC123: postmaster notice failed while bouncing to alice@example.org"
            in log.getvalue())
    q.fail_for = {"alice@example.org"}
    with pytest.raises(QueueWriteError):
        await notifier.bounced(message(), [rcpt()])


async def test_missing_original_still_sends_notice() -> None:
    q = FakeQueue()
    q.missing = True
    notifier, log = make_notifier(q)
    await notifier.bounced(message(), [rcpt()])
    assert parse(q.enqueued[0].content).original is None
    assert "original unavailable" in log.getvalue()


async def test_notifier_error_notice_respects_classes() -> None:
    q = FakeQueue()
    notifier, _ = make_notifier(q, notify_classes=frozenset({"software"}))
    assert await notifier.error_notice("c[192.0.2.9]", ["In:  X"], None, ["protocol"]) is None
    assert await notifier.error_notice("c[192.0.2.9]", ["In:  X"], None, ["software"]) == "NEW1"
    assert q.enqueued[0].sender == "double-bounce@example.org"


async def test_notifier_accepts_config_and_new_queue_id() -> None:
    q = FakeQueue()
    config = from_mapping({"myhostname": "mx.example.org"})
    log = MailLog(hostname="mx.example.org", stream=io.StringIO())
    notifier = Notifier(config, q.enqueue, q.read_content, log, new_queue_id=lambda: "PRE1",
                        clock=lambda: NOW)
    await notifier.bounced(message(), [rcpt()])
    new = q.enqueued[0]
    assert new.queue_id == "PRE1"
    assert parse(new.content).msg["Message-ID"].endswith(".PRE1@mx.example.org>")
