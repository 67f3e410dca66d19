"""header_checks, mime_header_checks, nested_header_checks and body_checks (header_checks(5))."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailcore.checks import (
    Action,
    ActionError,
    BodyEvent,
    ContentChecks,
    HeaderEvent,
    HeaderKind,
    LogFacts,
    MessageInspector,
    RejectReply,
    Verdict,
    act_log_line,
    parse_action,
)
from mailcore.checks.actions import BODY, HEADER
from mailcore.config import from_mapping
from mailcore.tables import TableSet

FACTS = LogFacts(queue_id="4F2A1C3B", origin="client.example[192.0.2.7]", sender="a@b.example",
                 recipient="c@d.example", protocol="ESMTP", helo="h.example")


@dataclass
class Run:
    output: list[bytes] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)


def make_checks(tmp_path: Path, warnings: list[str], **tables: str) -> ContentChecks:
    settings = {}
    for name, rules in tables.items():
        path = tmp_path / name
        path.write_text(rules)
        settings[name] = f"regexp:{path}"
    settings.update({k: v for k, v in EXTRA.items() if k not in settings})
    return ContentChecks(from_mapping(settings), TableSet(), warn=warnings.append)


EXTRA: dict[str, str] = {}


async def run(checks: ContentChecks, message: bytes, warnings: list[str]) -> Run:
    """The way cleanup drives the checks: tracker events through one MessageInspector."""
    tracker = checks.tracker()
    inspector: MessageInspector = checks.inspector(FACTS)
    result = Run(warnings=warnings)
    for line in [*message.split(b"\n"), None]:
        events = tracker.feed(line) if line is not None else tracker.finish()
        for event in events:
            if isinstance(event, HeaderEvent):
                outcome = await inspector.header(event)
            elif isinstance(event, BodyEvent):
                outcome = await inspector.body(event)
            else:
                continue
            result.output += outcome.prepend
            if outcome.output is not None:
                result.output += outcome.output.split(b"\n") if isinstance(
                    event, HeaderEvent) else [outcome.output]
            result.logs += outcome.logs
    result.verdict = inspector.verdict(tracker)
    return result


SIMPLE = b"Subject: buy now\nFrom: x@y.example\n\nline one\nline two"


async def check(tmp_path: Path, message: bytes = SIMPLE, **tables: str) -> Run:
    warnings: list[str] = []
    return await run(make_checks(tmp_path, warnings, **tables), message, warnings)


# --- header actions ------------------------------------------------------------------------
async def test_reject_default_text_and_log_line(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject: buy now/ REJECT\n")
    assert r.verdict.reject == RejectReply(550, "5.7.1", "message content rejected")
    assert str(r.verdict.reject) == "550 5.7.1 message content rejected"
    assert r.logs == ["4F2A1C3B: reject: header Subject: buy now from client.example[192.0.2.7];"
                      " from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<h.example>:"
                      " 5.7.1 message content rejected"]


async def test_reject_with_text_and_with_own_status_code(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ REJECT No spam please\n")
    assert r.verdict.reject == RejectReply(550, "5.7.1", "No spam please")
    r = await check(tmp_path, header_checks="/^Subject:/ REJECT 4.7.0 Try later\n")
    assert r.verdict.reject == RejectReply(451, "4.7.0", "Try later")
    assert r.verdict.reject.temporary
    r = await check(tmp_path, header_checks="/^Subject:/ REJECT 5.7.9 Go away\n")
    assert r.verdict.reject == RejectReply(550, "5.7.9", "Go away")


async def test_reject_with_success_code_becomes_temporary_with_warning(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ REJECT 2.0.0 odd\n")
    assert r.verdict.reject == RejectReply(451, "4.0.0", "odd")
    assert r.warnings == ["bad DSN action in 2.0.0 odd -- need 4.x.x or 5.x.x"]


async def test_reject_stops_further_inspection(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ REJECT\n/^From:/ HOLD\n",
                    body_checks="/line/ DISCARD\n")
    assert not r.verdict.hold and not r.verdict.discard
    assert len(r.logs) == 1


async def test_warn_and_info_only_log(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ WARN looks spammy\n/^From:/ INFO\n")
    assert r.verdict == Verdict()
    assert r.output[:2] == [b"Subject: buy now", b"From: x@y.example"]
    assert r.logs[0].startswith("4F2A1C3B: warning: header Subject: buy now from ")
    assert r.logs[0].endswith(": looks spammy")
    assert r.logs[1].startswith("4F2A1C3B: info: header From: x@y.example from ")
    assert r.logs[1].endswith("helo=<h.example>")


async def test_discard_hold_redirect_filter_bcc(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ DISCARD spam\n")
    assert r.verdict.discard and r.logs[0].split(": ", 2)[1] == "discard"
    r = await check(tmp_path, header_checks="/^Subject:/ HOLD\n/^From:/ HOLD again\n")
    assert r.verdict.hold and len(r.logs) == 1  # the second HOLD is not logged
    r = await check(tmp_path, header_checks="/^Subject:/ FILTER smtp:[127.0.0.1]:10025\n"
                                            "/^From:/ FILTER lmtp:unix:/x\n")
    assert r.verdict.filter == "lmtp:unix:/x"  # the last FILTER wins
    r = await check(tmp_path, header_checks="/^Subject:/ BCC audit@example.com\n"
                                            "/^From:/ BCC second@example.com\n")
    assert r.verdict.bcc == ("audit@example.com", "second@example.com")
    r = await check(tmp_path, header_checks="/^Subject:/ REDIRECT trap@example.com\n"
                                            "/^From:/ BCC never@example.com\n")
    assert r.verdict.redirect == "trap@example.com" and r.verdict.bcc == ()


async def test_ignore_prepend_replace_strip_dunno_ok(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ IGNORE\n")
    assert r.output[0] == b"From: x@y.example" and r.logs == []
    r = await check(tmp_path, header_checks="/^Subject:/ PREPEND X-Flag: yes\n")
    assert r.output[:2] == [b"X-Flag: yes", b"Subject: buy now"]
    assert "prepend: header Subject: buy now" in r.logs[0]
    r = await check(tmp_path, header_checks="/^Subject: (.*)/ REPLACE Subject: [SPAM] $1\n")
    assert r.output[0] == b"Subject: [SPAM] buy now"
    r = await check(tmp_path, header_checks="/^Subject:/ STRIP removed\n")
    assert r.output[0] == b"From: x@y.example" and "strip: header" in r.logs[0]
    r = await check(tmp_path, header_checks="/^Subject:/ DUNNO\n/^Subject:/ REJECT\n")
    assert r.verdict.reject is None and r.output[0] == b"Subject: buy now"
    r = await check(tmp_path, header_checks="/^Subject:/ OK\n/^Subject:/ HOLD\n")
    assert not r.verdict.hold  # OK ends the table search for this header, like DUNNO
    assert (await check(tmp_path, header_checks="/^From:/ ok\n")).logs == []


async def test_bad_results_are_warned_about_and_ignored(tmp_path: Path) -> None:
    rules = ("/^Subject:/ FROBNICATE now\n/^From:/ REDIRECT nobody\n"
             "/^line one/ FILTER nocolon\n/^line two/ PREPEND\n")
    r = await check(tmp_path, header_checks=rules, body_checks=rules)
    assert r.verdict == Verdict()
    assert r.output == [b"Subject: buy now", b"From: x@y.example", b"", b"line one", b"line two"]
    assert r.warnings == [
        "unknown command in header_checks map: FROBNICATE now",
        'bad REDIRECT target "nobody" in header_checks map -- need user@domain',
        "bad FILTER command nocolon in body_checks -- need transport:destination",
        "PREPEND action without text in body_checks map",
    ]


async def test_prepend_and_replace_need_a_header_in_header_context(tmp_path: Path) -> None:
    r = await check(tmp_path, header_checks="/^Subject:/ REPLACE not a header\n")
    assert r.output[0] == b"Subject: buy now"
    assert r.warnings == ['bad REPLACE header text "not a header" in header_checks map -- '
                          'need "headername: headervalue"']


# --- body actions --------------------------------------------------------------------------
async def test_body_actions(tmp_path: Path) -> None:
    r = await check(tmp_path, body_checks="/^line one$/ REPLACE line 1\n/two/ IGNORE\n")
    assert r.output[2:] == [b"", b"line 1"]
    r = await check(tmp_path, body_checks="/^line two/ PREPEND before two\n")
    assert r.output[-3:] == [b"line one", b"before two", b"line two"]
    r = await check(tmp_path, body_checks="/^line (one)/ REJECT body $1 refused\n")
    assert r.verdict.reject == RejectReply(550, "5.7.1", "body one refused")
    assert r.logs[0].startswith("4F2A1C3B: reject: body line one from client.example[")
    assert r.logs[0].endswith(": 5.7.1 body one refused")
    for verb, attr in (("DISCARD", "discard"), ("HOLD", "hold")):
        r = await check(tmp_path, body_checks=f"/two/ {verb}\n")
        assert getattr(r.verdict, attr)
    r = await check(tmp_path, body_checks="/two/ WARN w\n/one/ BCC b@c.example\n")
    assert r.verdict.bcc == ("b@c.example",) and "warning: body line two" in r.logs[1]


async def test_body_checks_see_boundaries_and_the_separator(tmp_path: Path) -> None:
    message = b"Content-Type: multipart/mixed; boundary=zz\n\n--zz\n\npart\n--zz--"
    r = await check(tmp_path, message, body_checks="/^--zz--$/ WARN closing\n/^$/ INFO blank\n")
    assert [log.split(": ")[1] for log in r.logs] == ["info", "info", "warning"]


async def test_body_checks_size_limit_per_body_part(tmp_path: Path) -> None:
    EXTRA["body_checks_size_limit"] = "20"
    try:
        message = (b"Content-Type: multipart/mixed; boundary=q\n\n"
                   b"--q\n\n0123456789\n0123456789\nSPAM late in part one\n"
                   b"--q\n\nSPAM early in part two")
        r = await check(tmp_path, message, body_checks="/SPAM/ WARN found\n")
    finally:
        EXTRA.clear()
    # Part one: "" at 0, two lines at 1 and 12, the third starts at 23 >= 20: not checked.
    assert len(r.logs) == 1 and "SPAM early in part two" in r.logs[0]


async def test_long_body_lines_are_checked_in_line_length_limit_chunks(tmp_path: Path) -> None:
    EXTRA["line_length_limit"] = "10"
    try:
        message = b"Subject: s\n\n" + b"a" * 10 + b"BAD" + b"b" * 7
        r = await check(tmp_path, message, body_checks="/^BAD/ REPLACE good\n")
    finally:
        EXTRA.clear()
    assert r.output[-1] == b"a" * 10 + b"good"


# --- which table sees which header ---------------------------------------------------------
FORWARD = b"""\
From: outer@example.com
Subject: see attached
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

hi
--b1
Content-Type: message/rfc822

From: inner@example.org
Subject: inner subject
Content-Type: text/plain; name="evil.exe"

inner body
--b1--"""


async def test_primary_mime_and_nested_tables(tmp_path: Path) -> None:
    r = await check(
        tmp_path, FORWARD,
        header_checks="/^(.*)/ INFO primary $1\n",
        mime_header_checks="/^(.*)/ INFO mime $1\n",
        nested_header_checks="/^(.*)/ INFO nested $1\n",
    )
    seen = [log.split("helo=<h.example>: ", 1)[1] for log in r.logs]
    assert seen == [
        "primary From: outer@example.com",
        "primary Subject: see attached",
        "mime MIME-Version: 1.0",
        'mime Content-Type: multipart/mixed; boundary="b1"',
        "mime Content-Type: text/plain",
        "mime Content-Type: message/rfc822",
        "nested From: inner@example.org",
        "nested Subject: inner subject",
        'mime Content-Type: text/plain; name="evil.exe"',
    ]


async def test_mime_and_nested_default_to_header_checks(tmp_path: Path) -> None:
    r = await check(tmp_path, FORWARD,
                    header_checks='/^Content-Type:.*name="?[^"]*\\.(exe|scr)/ REJECT bad $1\n')
    assert r.verdict.reject == RejectReply(550, "5.7.1", "bad exe")
    r = await check(tmp_path, FORWARD, header_checks="/^Subject: inner/ HOLD\n")
    assert r.verdict.hold
    EXTRA["nested_header_checks"] = ""
    try:
        r = await check(tmp_path, FORWARD, header_checks="/^Subject: inner/ HOLD\n")
    finally:
        EXTRA.clear()
    assert not r.verdict.hold


async def test_multi_line_header_is_matched_whole(tmp_path: Path) -> None:
    message = b"Subject: first part\n\tsecond part\nTo: x@y\n\nbody"
    r = await check(tmp_path, message, header_checks="/^Subject: first part[[:space:]]+second/ "
                                                     "PREPEND X-Hit: whole\n")
    assert r.output[:3] == [b"X-Hit: whole", b"Subject: first part", b"\tsecond part"]
    assert "header Subject: first part??second part from" in r.logs[0]
    r = await check(tmp_path, message, header_checks="/^Subject: first part$/ HOLD\n")
    assert not r.verdict.hold  # $ is the end of the whole header, not of its first line


async def test_multi_line_header_replaced_and_ignored_whole(tmp_path: Path) -> None:
    message = b"Subject: first\n second\n third\nTo: x@y\n\nbody"
    r = await check(tmp_path, message, header_checks="/^Subject:/ IGNORE\n")
    assert r.output[:2] == [b"To: x@y", b""]


async def test_eight_bit_and_utf8_headers(tmp_path: Path) -> None:
    message = "Subject: Gr\u00fc\u00dfe aus K\u00f6ln\n\nbody".encode()
    r = await check(tmp_path, message, header_checks="/K\u00f6ln/ REJECT no $0\n".replace(
        " $0", " cologne"))
    assert r.verdict.reject is not None
    assert "header Subject: Gr\u00fc\u00dfe aus K\u00f6ln from" in r.logs[0]
    raw = b"Subject: caf\xe9 latin-1\n\nbody"
    r = await check(tmp_path, raw, header_checks="/^Subject: caf.* latin-1$/ REPLACE "
                                                 "Subject: cleaned\n")
    assert r.output[0] == b"Subject: cleaned"
    r = await check(tmp_path, raw, header_checks="/latin/ PREPEND X-Seen: 1\n")
    assert r.output[1] == b"Subject: caf\xe9 latin-1"  # undecodable bytes pass through intact
    assert "Subject: caf? latin-1" in r.logs[0]


async def test_mime_nesting_limit_rejects_only_with_header_checks(tmp_path: Path) -> None:
    lines = [b"Content-Type: multipart/mixed; boundary=b0", b""]
    for level in range(1, 5):
        lines += [f"--b{level - 1}".encode(),
                  f"Content-Type: multipart/mixed; boundary=b{level}".encode(), b""]
    message = b"\n".join(lines)
    EXTRA["mime_nesting_limit"] = "2"
    try:
        r = await check(tmp_path, message, header_checks="/^X-Nothing:/ HOLD\n")
        plain = await check(tmp_path, message)
    finally:
        EXTRA.clear()
    assert r.verdict.reject == RejectReply(550, "5.6.0", "MIME nesting exceeds safety limit")
    assert r.verdict.logs == (
        "4F2A1C3B: reject: mime-error MIME nesting exceeds safety limit: Content-Type: "
        "multipart/mixed; boundary=b3 from client.example[192.0.2.7]; from=<a@b.example> "
        "to=<c@d.example>",)
    assert plain.verdict.reject is None


async def test_table_lookup_failure_is_a_temporary_refusal(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = tmp_path / "hc"
    path.write_text("/^Subject:/ HOLD\n")
    checks = ContentChecks(from_mapping({"header_checks": f"regexp:{path}"}), TableSet(),
                           warn=warnings.append)
    path.write_text("/unterminated REJECT\n")
    r = await run(checks, SIMPLE, warnings)
    assert r.verdict.reject == RejectReply(451, "4.3.0", "Error: queue file write error")
    assert warnings[0].startswith("4F2A1C3B: header_checks map lookup problem -- message not "
                                  "accepted, try again later")


# --- pure pieces ---------------------------------------------------------------------------
def test_parse_action_words_are_case_insensitive() -> None:
    action = parse_action("redirect\tspam@example.com", map_class="header_checks",
                          context=HEADER)
    assert action == Action("REDIRECT", "spam@example.com", "header_checks", HEADER)
    assert action.stops_inspection
    assert parse_action("Ignore whatever", map_class="body_checks", context=BODY).verb == "IGNORE"
    assert parse_action("PREPEND any text", map_class="body_checks", context=BODY).text == (
        "any text")
    with pytest.raises(ActionError, match="unknown command in body_checks map: DELAY 1h"):
        parse_action("DELAY 1h", map_class="body_checks", context=BODY)
    with pytest.raises(ActionError, match='bad BCC address "x" in header_checks'):
        parse_action("BCC x", map_class="header_checks", context=HEADER)


def test_reject_reason_keeps_text_that_only_looks_like_a_code() -> None:
    action = parse_action("REJECT 3.1.1 not a dsn", map_class="header_checks", context=HEADER)
    assert action.reason == "5.7.1 3.1.1 not a dsn"
    action = parse_action("REJECT 5.1.1x glued", map_class="header_checks", context=HEADER)
    assert action.reason == "5.7.1 5.1.1x glued"


def test_act_log_line_optional_fields_and_truncation() -> None:
    facts = LogFacts(queue_id="Q1", origin="local", sender="")
    line = act_log_line(facts, "hold", "body", "x" * 300, "")
    assert line == f"Q1: hold: body {'x' * 200} from local; from=<>"


def test_header_kind_selection() -> None:
    checks = ContentChecks(from_mapping({}), TableSet())
    assert not checks.enabled
    assert checks.header_map(HeaderKind.PRIMARY, "Subject: x") == "header_checks"
    assert checks.header_map("nested", "Subject: x") == "nested_header_checks"
    assert checks.header_map("nested", "content-TYPE : text/plain") == "mime_header_checks"
    assert checks.header_map("primary", "Mime-Version: 1.0") == "mime_header_checks"


async def test_pcre_table_sees_the_embedded_newline(tmp_path: Path) -> None:
    path = tmp_path / "hc.pcre"
    path.write_text("/^Subject: one\\n\\ttwo$/ REJECT folded subject\n")
    warnings: list[str] = []
    checks = ContentChecks(from_mapping({"header_checks": f"pcre:{path}"}), TableSet(),
                           warn=warnings.append)
    action = await checks.check_header("primary", "Subject: one\n\ttwo")
    assert action is not None and action.reject_reply() == RejectReply(550, "5.7.1",
                                                                       "folded subject")
    assert await checks.check_header("primary", "Subject: one two") is None
    assert await checks.check_body_line("Subject: one\n\ttwo") is None  # body_checks unset
