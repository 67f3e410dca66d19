"""DSN format: every notice is parsed with the email package and each RFC 3464 field checked.

Sources: RFC 3464 (report format), RFC 3461 (ENVID/ORCPT/RET), RFC 6533 (SMTPUTF8), and
Postfix bounce(8) (bounce_notify_util.c: fields, Return-Path, bounce_size_limit rule)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from test_bounce_support import (
    ARRIVAL,
    NOW,
    ORIGINAL,
    message,
    parse,
    rcpt,
    settings,
    unfolded,
)

from mailcore.address import parse_orcpt, xtext_decode
from mailcore.bounce import (
    BOUNCE,
    DELAY,
    FULL,
    HDRS,
    SUCCESS,
    build_dsn,
    build_notice,
    collect_original,
    diagnostic,
    plan_notices,
    returned_mode,
)


def test_bounce_envelope_and_header() -> None:
    notice = build_dsn(BOUNCE, message(), [rcpt()], [ORIGINAL], settings(), NOW,
                       queue_id="NEW42")
    assert notice.sender == "" and notice.recipients == ("alice@example.org",)
    assert notice.label == "sender non-delivery notification"
    p = parse(notice.content)
    frm = p.msg["From"]
    assert frm.addresses[0].addr_spec == "MAILER-DAEMON@example.org"
    assert b"\nFrom: MAILER-DAEMON@example.org (Mail Delivery System)\n" in notice.content
    assert p.msg["To"].addresses[0].addr_spec == "alice@example.org"
    assert p.msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert p.msg["Auto-Submitted"] == "auto-replied"
    assert p.msg["Message-ID"] == "<20231114231320.NEW42@mx.example.org>"
    assert parsedate_to_datetime(str(p.msg["Date"])).timestamp() == NOW
    assert "id NEW42" in unfolded(p.msg["Received"])
    assert p.msg["MIME-Version"] == "1.0"
    assert p.msg["Content-Transfer-Encoding"] == "7bit"
    assert "ABC123" in p.msg.get_boundary()
    assert notice.content.endswith(f"--{p.msg.get_boundary()}--\n".encode())
    assert b"\r" not in notice.content
    assert not p.msg.defects and all(not part.defects for part in p.msg.walk())


def test_readable_part_names_recipient_and_remote_reply() -> None:
    r = rcpt(orig="Bob.Alias@example.org")
    p = parse(build_dsn(BOUNCE, message(r), [r], [ORIGINAL], settings(), NOW).content)
    text = unfolded(p.text)
    assert "<bob@remote.example> (expanded from <Bob.Alias@example.org>):" in text
    assert "said: 550 5.1.1 <bob@remote.example>: User unknown" in text
    assert all(len(line) <= 79 for line in p.text.splitlines())
    assert p.msg.get_payload()[0]["Content-Description"] == "Notification"
    assert p.msg.get_payload()[0].get_content_charset() == "us-ascii"


def test_per_message_fields_and_envid_round_trip() -> None:
    envid = xtext_decode("QQ+2B1+3Dx")  # what smtpd stores for ENVID=QQ+2B1+3Dx
    p = parse(build_dsn(BOUNCE, message(envid=envid), [rcpt()], [ORIGINAL], settings(),
                        NOW).content)
    pm = p.per_message
    assert p.report_type == "message/delivery-status"
    assert pm["Reporting-MTA"] == "dns; mx.example.org"
    assert pm["Original-Envelope-Id"] == "QQ+1=x"
    assert pm["X-mailcore-Queue-ID"] == "ABC123"
    assert pm["X-Mailcore-Queue-ID"] == "ABC123"  # field names are case-insensitive
    assert pm["X-mailcore-Sender"] == "rfc822; alice@example.org"
    assert parsedate_to_datetime(pm["Arrival-Date"]).timestamp() == ARRIVAL


def test_no_envid_no_original_envelope_id() -> None:
    p = parse(build_dsn(BOUNCE, message(), [rcpt()], [ORIGINAL], settings(), NOW).content)
    assert p.per_message["Original-Envelope-Id"] is None


def test_per_recipient_fields_remote_failure_with_orcpt() -> None:
    addr_type, decoded = parse_orcpt("rfc822;bob+2Borig@remote.example")
    r = rcpt(orcpt=f"{addr_type};{decoded}")
    p = parse(build_dsn(BOUNCE, message(r), [r], [ORIGINAL], settings(), NOW).content)
    (f,) = p.per_recipient
    assert f["Final-Recipient"] == "rfc822; bob@remote.example"
    assert f["Original-Recipient"] == "rfc822;bob+orig@remote.example"
    assert f["Action"] == "failed"
    assert f["Status"] == "5.1.1"
    assert f["Remote-MTA"] == "dns; mx.remote.example"
    assert unfolded(f["Diagnostic-Code"]) == (
        "smtp; 550 5.1.1 <bob@remote.example>: User unknown")
    assert f["Will-Retry-Until"] is None


def test_local_failure_has_no_remote_mta_and_mail_name_diagnostic() -> None:
    r = rcpt(address="nobody@example.org", reason="unknown user: \"nobody\"", relay="local",
             dsn="5.1.1")
    p = parse(build_dsn(BOUNCE, message(r), [r], [ORIGINAL], settings(mail_name="Postfix"),
                        NOW).content)
    (f,) = p.per_recipient
    assert f["Remote-MTA"] is None
    assert f["Diagnostic-Code"] == 'X-Postfix; unknown user: "nobody"'
    assert p.per_message["X-Postfix-Queue-ID"] == "ABC123"
    assert f["Original-Recipient"] is None  # no ORCPT and not rewritten


def test_original_recipient_from_rewritten_address_without_orcpt() -> None:
    r = rcpt(orig="sales@example.org")
    p = parse(build_dsn(BOUNCE, message(r), [r], [ORIGINAL], settings(), NOW).content)
    assert p.per_recipient[0]["Original-Recipient"] == "rfc822; sales@example.org"


def test_multiple_recipients_each_get_a_block() -> None:
    r1, r2 = rcpt(1), rcpt(2, "carol@remote.example", dsn="5.2.2", reason="552 5.2.2 full")
    p = parse(build_dsn(BOUNCE, message(r1, r2), [r1, r2], [ORIGINAL], settings(),
                        NOW).content)
    assert [f["Final-Recipient"] for f in p.per_recipient] == [
        "rfc822; bob@remote.example", "rfc822; carol@remote.example"]
    assert p.per_recipient[1]["Diagnostic-Code"] == "smtp; 552 5.2.2 full"


def test_ret_full_returns_whole_message_with_return_path() -> None:
    p = parse(build_dsn(BOUNCE, message(ret="FULL"), [rcpt()], [ORIGINAL], settings(),
                        NOW).content)
    assert p.original_type == "message/rfc822"
    assert p.original["Content-Description"] == "Undelivered Message"
    inner = p.original.get_payload()[0]
    assert inner["Return-Path"] == "<alice@example.org>"
    assert inner["Subject"] == "quarterly numbers"
    assert inner.get_content() == "first body line\nsecond body line\n"


def test_absent_ret_means_full_for_bounces() -> None:
    p = parse(build_dsn(BOUNCE, message(), [rcpt()], [ORIGINAL], settings(), NOW).content)
    assert p.original_type == "message/rfc822"


def test_ret_hdrs_returns_headers_only() -> None:
    p = parse(build_dsn(BOUNCE, message(ret="HDRS"), [rcpt()], [ORIGINAL], settings(),
                        NOW).content)
    assert p.original_type == "text/rfc822-headers"
    assert p.original["Content-Description"] == "Undelivered Message Headers"
    headers = p.original.get_content()
    assert "Subject: quarterly numbers" in headers
    assert "\tby mx.example.org" in headers  # folded header kept whole
    assert "first body line" not in headers


def test_bounce_size_limit_turns_full_into_headers() -> None:
    limit = len(ORIGINAL) - 1
    p = parse(build_dsn(BOUNCE, message(ret="FULL"), [rcpt()], [ORIGINAL],
                        settings(bounce_size_limit=limit), NOW).content)
    assert p.original_type == "text/rfc822-headers"
    assert "first body line" not in p.original.get_content()
    fits = parse(build_dsn(BOUNCE, message(ret="FULL"), [rcpt()], [ORIGINAL],
                           settings(bounce_size_limit=len(ORIGINAL)), NOW).content)
    assert fits.original_type == "message/rfc822"
    unlimited = parse(build_dsn(BOUNCE, message(ret="FULL", size=10**9), [rcpt()],
                                [ORIGINAL], settings(bounce_size_limit=0), NOW).content)
    assert unlimited.original_type == "message/rfc822"


def test_returned_mode_rule() -> None:
    assert returned_mode(FULL, 100, 100) == FULL
    assert returned_mode(FULL, 101, 100) == HDRS
    assert returned_mode(FULL, 0, 100) == HDRS  # unknown size: do not risk cutting MIME
    assert returned_mode(FULL, 10**9, 0) == FULL
    assert returned_mode(HDRS, 1, 100) == HDRS


def test_collector_reads_no_more_than_needed() -> None:
    consumed: list[int] = []

    def chunks():  # type: ignore[no-untyped-def]
        yield b"Subject: x\nFrom: a@b\n"
        consumed.append(1)
        yield b"\nbody " + b"x" * 1000 + b"\n"
        consumed.append(2)
        yield b"y" * 10**6
        consumed.append(3)

    assert collect_original(chunks(), HDRS, 50000) == b"Subject: x\nFrom: a@b\n"
    assert consumed == [1]
    consumed.clear()
    full = collect_original(chunks(), FULL, 500)  # stored size lied: still capped
    assert len(full) <= 500 and full.startswith(b"Subject: x\n") and consumed == [1]


def test_header_block_capped_at_a_header_boundary() -> None:
    many = b"".join(b"X-Filler-%d: value\n\tcontinued\n" % i for i in range(1000))
    got = collect_original([many, b"\nbody\n"], HDRS, 2000)
    assert len(got) <= 2000
    assert got.endswith(b"\tcontinued\n") and got.startswith(b"X-Filler-0:")


def test_body_without_blank_line_ends_headers() -> None:
    got = collect_original([b"Subject: a\nnot a header line\nmore\n"], HDRS, 0)
    assert got == b"Subject: a\n"


def test_delay_notice() -> None:
    r = rcpt(status="deferred", dsn="4.4.1",
             reason="connect to mx.remote.example[192.0.2.1]:25: Connection refused",
             relay="none")
    s = settings(delay_warning_time=4 * 3600.0, maximal_queue_lifetime=5 * 86400.0)
    notice = build_dsn(DELAY, message(r, ret="FULL"), [r], [ORIGINAL], s, NOW)
    assert notice.label == "sender delay notification"
    p = parse(notice.content)
    assert p.msg["Subject"] == "Delayed Mail (still being retried)"
    assert "4.0 hours" in p.text and "5.0 days" in p.text
    (f,) = p.per_recipient
    assert f["Action"] == "delayed" and f["Status"] == "4.4.1"
    assert f["Remote-MTA"] is None
    assert f["Diagnostic-Code"].startswith("X-mailcore; connect to")
    until = parsedate_to_datetime(f["Will-Retry-Until"]).timestamp()
    assert until == ARRIVAL + 5 * 86400.0
    assert p.original_type == "text/rfc822-headers"  # delay notices: headers only
    assert p.original["Content-Description"] == "Undelivered Message Headers"


@pytest.mark.parametrize("action", ["relayed", "delivered", "expanded"])
def test_success_notice_action(action: str) -> None:
    r = rcpt(notify="SUCCESS", status="sent", dsn="2.0.0",
             reason="250 2.0.0 Ok: queued as 4XyZ")
    notice = build_dsn(SUCCESS, message(r), [r], [ORIGINAL], settings(), NOW,
                       actions={1: action})
    p = parse(notice.content)
    assert p.msg["Subject"] == "Successful Mail Delivery Report"
    (f,) = p.per_recipient
    assert f["Action"] == action and f["Status"] == "2.0.0"
    assert f["Diagnostic-Code"] == "smtp; 250 2.0.0 Ok: queued as 4XyZ"
    assert p.original_type == "text/rfc822-headers"
    assert p.original["Content-Description"] == "Message Headers"


def test_success_default_action_is_delivered() -> None:
    r = rcpt(notify="SUCCESS", status="sent", dsn="2.0.0", reason="delivered to mailbox",
             relay="local")
    p = parse(build_dsn(SUCCESS, message(r), [r], [ORIGINAL], settings(), NOW).content)
    assert p.per_recipient[0]["Action"] == "delivered"
    assert p.per_recipient[0]["Diagnostic-Code"] == "X-mailcore; delivered to mailbox"


def test_smtputf8_message_uses_global_types() -> None:
    r = rcpt(address="δοκιμή@παράδειγμα.example", reason="550 5.1.1 unknown", relay="none")
    m = message(r, sender="ålice@example.org", attrs={"smtputf8": "yes"})
    original = "From: ålice@example.org\nSubject: grüße\n\nkörper\n".encode()
    notice = build_dsn(BOUNCE, m, [r], [original], settings(), NOW)
    assert notice.smtputf8 and notice.eight_bit
    assert notice.new_message(NOW).attrs["smtputf8"] == "yes"
    p = parse(notice.content)
    assert p.report_type == "message/global-delivery-status"
    assert p.per_recipient[0]["Final-Recipient"] == "utf-8; δοκιμή@παράδειγμα.example"
    assert p.per_message["X-mailcore-Sender"] == "utf-8; ålice@example.org"
    assert p.original_type == "message/global"
    assert p.msg["Content-Transfer-Encoding"] == "8bit"
    assert p.msg.get_payload()[0].get_content_charset() == "utf-8"
    assert "körper".encode() in notice.content


def test_8bit_original_without_smtputf8() -> None:
    original = b"Subject: x\nContent-Type: text/plain; charset=latin-1\n\n" + b"caf\xe9\n"
    m = message(attrs={"body_type": "8BITMIME"}, size=len(original))
    notice = build_dsn(BOUNCE, m, [rcpt()], [original], settings(), NOW)
    p = parse(notice.content)
    assert p.report_type == "message/delivery-status"
    assert p.original_type == "message/rfc822"
    assert p.original["Content-Transfer-Encoding"] == "8bit"
    assert p.msg["Content-Transfer-Encoding"] == "8bit"
    assert b"caf\xe9\n" in notice.content  # returned byte for byte
    new = notice.new_message(NOW, "QID1")
    assert new.attrs["body_type"] == "8BITMIME" and "smtputf8" not in new.attrs
    assert new.queue_id == "QID1" and new.sender == "" and new.size == len(notice.content)


def test_utf8_orcpt_escaped_outside_global_report() -> None:
    r = rcpt(orcpt="utf-8;ü@example.org")
    p = parse(build_dsn(BOUNCE, message(r), [r], [ORIGINAL], settings(), NOW).content)
    assert p.per_recipient[0]["Original-Recipient"] == "utf-8;\\x{FC}@example.org"


def test_unavailable_original_omits_third_part() -> None:
    p = parse(build_dsn(BOUNCE, message(), [rcpt()], None, settings(), NOW).content)
    assert p.original is None
    assert "no longer available" in p.text


def test_boundary_never_occurs_in_content() -> None:
    hostile = ORIGINAL + b"--ABC123.%d/mx.example.org--\n" % int(NOW)
    notice = build_dsn(BOUNCE, message(size=len(hostile)), [rcpt()], [hostile], settings(),
                       NOW)
    p = parse(notice.content)
    boundary = p.msg.get_boundary()
    assert boundary != f"ABC123.{int(NOW)}/mx.example.org"
    assert p.original_type == "message/rfc822"
    assert b"--ABC123.%d/mx.example.org--" % int(NOW) in p.original.get_payload()[0].as_bytes()


def test_postmaster_copy_format() -> None:
    r1, r2 = rcpt(1, notify="NEVER"), rcpt(2, "carol@remote.example")
    m = message(r1, r2, ret="FULL")
    decision = plan_notices(BOUNCE, m, [r1, r2], settings(notify_classes=frozenset({"bounce"})))
    copy = decision.notices[-1]
    notice = build_notice(copy, m, [ORIGINAL], settings(), NOW)
    assert notice.sender == "double-bounce@example.org"
    assert notice.recipients == ("postmaster@example.org",)
    p = parse(notice.content)
    assert p.msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert p.msg["Auto-Submitted"] == "auto-generated"
    assert "This report comes from" not in p.text  # no boilerplate for postmaster
    assert len(p.per_recipient) == 2  # NOTIFY does not apply to postmaster copies
    assert p.original_type == "text/rfc822-headers"


@pytest.mark.parametrize(("reason", "relay", "expected"), [
    ("host a.example[192.0.2.1] said: 451 4.3.0 try later (in reply to end of DATA command)",
     "a.example[192.0.2.1]:25", ("a.example", "smtp", "451 4.3.0 try later")),
    ("550 no such user", "b.example[2001:db8::1]:2525", ("b.example", "smtp",
                                                          "550 no such user")),
    ("mail for c.example loops back to myself", "none", (None, "X-m", "mail for c.example "
                                                        "loops back to myself")),
    ("User unknown in local recipient table", "local", (None, "X-m",
                                                       "User unknown in local recipient table")),
])
def test_diagnostic_classification(reason: str, relay: str,
                                   expected: tuple[str | None, str, str]) -> None:
    assert diagnostic(reason, relay, "m") == expected
