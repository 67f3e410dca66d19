"""The temp/perm rule (ARCHITECTURE: enhanced class digit wins, else reply code, else temp)."""

import pytest

from mailcore.status import classify, default_dsn, parse_reply, sanitize


@pytest.mark.parametrize(("code", "dsn", "expected"), [
    (250, "2.0.0", "success"),
    (550, "5.1.1", "permanent"),
    (450, "4.2.0", "temporary"),
    (550, "4.7.1", "temporary"),   # the enhanced class digit wins
    (451, "5.7.1", "permanent"),
    (554, "", "permanent"),
    (421, "", "temporary"),
    (999, "", "temporary"),        # unclassifiable is temporary
    (0, "x.y.z", "temporary"),
])
def test_classify(code, dsn, expected):
    assert classify(code, dsn) == expected


def test_parse_multiline_reply():
    reply = parse_reply(550, "5.1.1 <a@b>: Recipient address rejected:\n5.1.1 User unknown")
    assert (reply.code, reply.dsn) == (550, "5.1.1")
    assert reply.text == "<a@b>: Recipient address rejected: User unknown"
    assert reply.is_permanent


def test_reply_without_enhanced_code():
    reply = parse_reply(452, "Too many recipients")
    assert reply.dsn == "" and not reply.is_permanent
    assert default_dsn(452) == "4.0.0" and default_dsn(550) == "5.0.0"


def test_sanitize_strips_control_characters_and_bounds_length():
    assert sanitize("bad\r\nInjected: x\x00") == "bad??Injected: x?"
    assert len(sanitize("x" * 5000)) == 1003
