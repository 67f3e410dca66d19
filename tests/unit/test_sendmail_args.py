"""sendmail(1) argv grammar as Postfix's sendmail.c parses it (getopt "+A:B:C:F:GIL:...")."""

from __future__ import annotations

import pytest

from mailcore.address import AddressError
from mailcore.sendmail import (
    EX_UNAVAILABLE,
    EX_USAGE,
    SendmailExit,
    parse_address_list,
    parse_argv,
    parse_notify,
    recipients_from_argument,
    sender_from_option,
)


def test_defaults_and_recipients() -> None:
    args = parse_argv(["a@example.com", "b"])
    assert args.mode == "enqueue"
    assert args.recipients == ("a@example.com", "b")
    assert args.dot_ends_input and not args.extract and args.sender is None


@pytest.mark.parametrize(("argv", "field", "value"), [
    (["-t"], "extract", True),
    (["-i"], "dot_ends_input", False),
    (["-oi"], "dot_ends_input", False),
    (["-o", "i"], "dot_ends_input", False),
    (["-f", "me@x.org"], "sender", "me@x.org"),
    (["-fme@x.org"], "sender", "me@x.org"),
    (["-r", "me@x.org"], "sender", "me@x.org"),
    (["-F", "Jane Doe"], "full_name", "Jane Doe"),
    (["-N", "success,delay"], "notify", "SUCCESS,DELAY"),
    (["-N", "never"], "notify", "NEVER"),
    (["-V", "env-1"], "envid", "env-1"),
    (["-R", "hdrs"], "ret", "HDRS"),
    (["-B", "8BITMIME"], "body_type", "8BITMIME"),
    (["-G"], "rewrite_context", "remote"),
    (["-bp"], "mode", "mailq"),
    (["-bi"], "mode", "newaliases"),
    (["-I"], "mode", "newaliases"),
    (["-bs"], "mode", "smtp"),
    (["-bm"], "mode", "enqueue"),
    (["-bh"], "mode", "ignore"),
    (["-q"], "mode", "flush"),
    (["-q30m"], "queue_interval", "30m"),
    (["-qRexample.com"], "flush_site", "example.com"),
    (["-qIABCDEF123456"], "flush_id", "ABCDEF123456"),
    (["-C", "/etc/x/main.cf"], "config_dir", "/etc/x"),
    (["-C", "/etc/x"], "config_dir", "/etc/x"),
    (["-oA/etc/aliases2"], "alias_database", "/etc/aliases2"),
    (["-ti"], "extract", True),
    (["-v", "-v"], "verbose", 2),
])
def test_each_option(argv: list[str], field: str, value: object) -> None:
    assert getattr(parse_argv([*argv]), field) == value


@pytest.mark.parametrize("argv", [
    ["-oQ/tmp/x"], ["-o7"], ["-o8"], ["-om"], ["-oeq"], ["-Am"], ["-L", "label"],
    ["-h", "20"], ["-U"], ["-m"], ["-c"], ["-x"], ["-e", "q"], ["-O", "x=y"], ["-p", "s"],
])
def test_ignored_options(argv: list[str]) -> None:
    args = parse_argv([*argv, "r@example.com"])
    assert args.recipients == ("r@example.com",)
    assert args.mode == "enqueue" and args.sender is None and args.dot_ends_input


def test_option_values_are_data_not_options() -> None:
    args = parse_argv(["-f", "-oQ/tmp", "r@example.com"])
    assert args.sender == "-oQ/tmp"
    assert args.recipients == ("r@example.com",)
    # the value of -F swallows what looks like -t
    assert parse_argv(["-F", "-t", "x"]).extract is False


def test_options_stop_at_first_operand_and_double_dash() -> None:
    args = parse_argv(["a@example.com", "-t", "-oX"])
    assert args.recipients == ("a@example.com", "-t", "-oX") and not args.extract
    args = parse_argv(["-i", "--", "-oX"])
    assert args.recipients == ("-oX",) and not args.dot_ends_input


def test_bad_values_are_warned_and_ignored() -> None:
    args = parse_argv(["-N", "sometimes", "-V", "x" * 101, "-R", "all", "a@b"])
    assert args.notify is None and args.envid is None and args.ret is None
    assert len(args.warnings) == 3
    assert parse_argv(["-V", "bad\x01id", "a@b"]).envid is None


@pytest.mark.parametrize(("argv", "status"), [
    (["-Z"], EX_USAGE),
    (["-f"], EX_USAGE),
    (["-n"], EX_USAGE),
    (["-B", "BINARY"], EX_USAGE),
    (["-bz"], EX_USAGE),
    (["-qX"], EX_USAGE),
    (["-qR"], EX_USAGE),
    (["-oA"], EX_USAGE),
    (["-XV"], EX_UNAVAILABLE),
    (["-Xlog"], EX_USAGE),
    (["-t", "-bp"], EX_USAGE),
    (["-bp", "a@b"], EX_USAGE),
    (["-q", "a@b"], EX_USAGE),
    (["-bi", "a@b"], EX_USAGE),
])
def test_usage_errors(argv: list[str], status: int) -> None:
    with pytest.raises(SendmailExit) as info:
        parse_argv(argv)
    assert info.value.status == status


def test_program_name_picks_mode() -> None:
    assert parse_argv([], prog="/usr/bin/mailq").mode == "mailq"
    assert parse_argv([], prog="newaliases").mode == "newaliases"
    assert parse_argv(["-bm", "a@b"], prog="mailq").mode == "enqueue"


def test_notify_words() -> None:
    assert parse_notify("failure, SUCCESS") == "SUCCESS,FAILURE"
    assert parse_notify("never,success") is None
    assert parse_notify("") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("a@example.com", ["a@example.com"]),
    ("a@example.com, b@example.org", ["a@example.com", "b@example.org"]),
    ("Bob Smith <bob@example.com>", ["bob@example.com"]),
    ('"Smith, Bob" <bob@example.com>, c@d.e', ["bob@example.com", "c@d.e"]),
    ("bob@example.com (Bob, the builder)", ["bob@example.com"]),
    ("undisclosed-recipients:;", []),
    ("Friends: a@x.org, B <b@y.org>;, c@z.org", ["a@x.org", "b@y.org", "c@z.org"]),
    ("<@relay.example:u@example.com>", ["u@example.com"]),
    ('"john doe"@example.com', ['"john doe"@example.com']),
    ("root", ["root"]),
])
def test_address_lists(text: str, expected: list[str]) -> None:
    assert parse_address_list(text) == expected


def test_recipient_validation() -> None:
    assert recipients_from_argument("Jo <JO@Example.COM>") == ["JO@example.com"]
    for bad in ("-oX", "-oX@example.com", "|cmd@example.com", "a/../b@x.org", "John Doe",
                "a@@b", "<a@b", ""):
        with pytest.raises(AddressError):
            recipients_from_argument(bad)


def test_sender_forms() -> None:
    assert sender_from_option("") == ""
    assert sender_from_option("<>") == ""
    assert sender_from_option("Me <me@example.com>") == "me@example.com"
    with pytest.raises(AddressError):
        sender_from_option("-oQ/tmp")
