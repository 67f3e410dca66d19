"""pipe(8) logic without processes: argv macros, address forms, the copy, exit statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailcore.config.master import PipeSpec
from mailcore.delivery.pipe import (
    DEFAULT_PATH,
    SYSEXITS,
    Splitter,
    command_credentials,
    command_environment,
    command_outcome,
    copy_line,
    delivered_to_loop,
    expand_argv,
    fold_address,
    internal_form,
    leading_dsn,
    message_values,
    parse_arg,
    prepended_lines,
    printable_output,
    quote_822_local,
    recipient_values,
    success_reason,
)
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef

PLUS = Splitter("+")


def spec(flags: str = "", argv: tuple[str, ...] = ("/bin/true",), **kw: object) -> PipeSpec:
    return PipeSpec(flags=flags, user="nobody", group=None, argv=argv, **kw)  # type: ignore[arg-type]


def request(sender: str = "s@example.org", *rcpts: RecipientRef, **kw: object) -> DeliveryRequest:
    rcpts = rcpts or (RecipientRef(1, "u@example.com"),)
    base = dict(queue_id="4ABC", sender=sender, recipients=rcpts, transport="p",
                nexthop="Example.COM", size=1234, arrival_time=0.0,
                attrs=(("client_address", "192.0.2.7"), ("client_name", "mx.example.net"),
                       ("helo_name", "helo.example"), ("protocol_name", "ESMTP")))
    base.update(kw)
    return DeliveryRequest(**base)  # type: ignore[arg-type]


# --- macro parsing -------------------------------------------------------------------------

@pytest.mark.parametrize("word, parts", [
    ("${recipient}", ((True, "recipient"),)),
    ("$(sender)", ((True, "sender"),)),
    ("$nexthop.x", ((True, "nexthop"), (False, ".x"))),
    ("-f$sender", ((False, "-f"), (True, "sender"))),
    ("a$$b", ((False, "a$b"),)),
    ("$$$user", ((False, "$"), (True, "user"))),
    ("plain", ((False, "plain"),)),
])
def test_parse_arg_forms(word: str, parts: tuple) -> None:
    assert parse_arg(word).parts == parts


def test_recipient_macros_mark_repeated_arguments() -> None:
    assert parse_arg("x${user}y$domain").recipient_macros == {"user", "domain"}
    assert parse_arg("$sender$nexthop$size").recipient_macros == frozenset()


@pytest.mark.parametrize("word, problem", [
    ("${bogus}", 'unknown macro name "bogus"'),
    ("${recipient", "truncated macro reference"),
    ("a$", "empty macro name"),
    ("$-x", "empty macro name"),
    ("${recipient?x}", "unknown macro name"),  # pipe(8) knows no conditional forms
])
def test_bad_macros_are_config_errors_with_place(word: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_arg(word, file="master.cf", line=12)
    assert problem in caught.value.message
    assert (caught.value.file, caught.value.line) == ("master.cf", 12)


# --- address forms -------------------------------------------------------------------------

@pytest.mark.parametrize("stored, internal", [
    ('"x;touch pwn"@ext', "x;touch pwn@ext"),
    ('"$(id)"@ext', "$(id)@ext"),
    ('"a\\"b"@x', 'a"b@x'),
    ('"a@b"@x', "a@b@x"),
    ("plain@x", "plain@x"),
    ("MAILER-DAEMON", "MAILER-DAEMON"),
])
def test_internal_form_unquotes_the_local_part(stored: str, internal: str) -> None:
    assert internal_form(stored) == internal


@pytest.mark.parametrize("internal, quoted", [
    ("x;touch pwn@ext", '"x;touch pwn"@ext'),
    ("a b@x", '"a b"@x'),
    ('a"b@x', '"a\\"b"@x'),
    ("a@b@x", '"a@b"@x'),
    (".lead@x", '".lead"@x'),
    ("a..b@x", '"a..b"@x'),
    ("user+ext@x", "user+ext@x"),
    ("j\u00f6rg@x", "j\u00f6rg@x"),  # 8-bit transparent
    ("bare", "bare"),
])
def test_quote_822_local(internal: str, quoted: str) -> None:
    assert quote_822_local(internal) == quoted
    assert internal_form(quoted) == internal


def test_fold_address() -> None:
    assert fold_address("Ab@Cd", user=True, host=False) == "ab@Cd"
    assert fold_address("Ab@Cd", user=False, host=True) == "Ab@cd"
    assert fold_address("Ab@Cd", user=True, host=True) == "ab@cd"
    assert fold_address("Ab", user=True, host=False) == "ab"
    assert fold_address("Ab", user=False, host=True) == "Ab"


# --- expansion -----------------------------------------------------------------------------

def expand(argv: tuple[str, ...], req: DeliveryRequest, flags: str = "",
           splitter: Splitter = PLUS, **kw: object) -> list[str]:
    s = spec(flags, argv, **kw)
    return expand_argv([parse_arg(w) for w in argv], message_values(req, s),
                       req.recipients, flags, splitter)


def test_recipient_argument_repeats_per_recipient_others_once() -> None:
    req = request("s@x", RecipientRef(1, "a@x"), RecipientRef(2, "b@y"), RecipientRef(3, "c@z"))
    argv = expand(("cmd", "-f", "$sender", "--", "${recipient}", "n=$nexthop"), req)
    assert argv == ["cmd", "-f", "s@x", "--", "a@x", "b@y", "c@z", "n=Example.COM"]


def test_every_macro() -> None:
    req = request('"Odd Sender"@s.example',
                  RecipientRef(1, "Joe+Box@Dom.Example", orig_rcpt="alias@orig.example"))
    names = ("sender", "recipient", "original_recipient", "user", "extension", "mailbox",
             "domain", "nexthop", "size", "queue_id", "client_address", "client_hostname",
             "client_helo", "client_protocol", "sasl_username", "client_port")
    argv = expand(tuple(f"{n}=${{{n}}}" for n in names), req)
    assert argv == [
        "sender=Odd Sender@s.example", "recipient=Joe+Box@Dom.Example",
        "original_recipient=alias@orig.example", "user=Joe", "extension=Box",
        "mailbox=Joe+Box", "domain=Dom.Example", "nexthop=Example.COM", "size=1234",
        "queue_id=4ABC", "client_address=192.0.2.7", "client_hostname=mx.example.net",
        "client_helo=helo.example", "client_protocol=ESMTP", "sasl_username=",
        "client_port="]


def test_values_are_not_expanded_again() -> None:
    req = request('"$(id)"@ext', RecipientRef(1, '"${sender}"@x'))
    assert expand(("$sender", "$recipient"), req) == ["$(id)@ext", "${sender}@x"]


def test_flag_q_quotes_sender_and_recipient_only() -> None:
    req = request('"x;touch pwn"@ext', RecipientRef(1, '"a b+c"@x'))
    assert expand(("$sender", "$recipient", "$user", "$mailbox"), req, "q") == [
        '"x;touch pwn"@ext', '"a b+c"@x', "a b", "a b+c"]
    assert expand(("$sender", "$recipient"), req) == ["x;touch pwn@ext", "a b+c@x"]


def test_flags_u_and_h_fold_case() -> None:
    req = request("S@X", RecipientRef(1, "Joe+Ext@Dom.EX"))
    argv = ("$recipient", "$user", "$extension", "$domain", "$nexthop", "$sender")
    assert expand(argv, req, "u") == ["joe+ext@Dom.EX", "joe", "ext", "Dom.EX",
                                      "Example.COM", "S@X"]
    assert expand(argv, req, "h") == ["Joe+Ext@dom.ex", "Joe", "Ext", "dom.ex",
                                      "example.com", "S@X"]
    assert expand(argv, req, "uh") == ["joe+ext@dom.ex", "joe", "ext", "dom.ex",
                                       "example.com", "S@X"]


def test_null_sender_replacement_and_q() -> None:
    req = request("")
    assert expand(("$sender",), req) == ["MAILER-DAEMON"]
    assert expand(("$sender",), req, null_sender="") == [""]
    assert expand(("$sender",), req, "q", null_sender="a b") == ['"a b"']
    assert expand(("$sender",), req, "q", null_sender="") == [""]


def test_empty_user_leaves_the_argument_out() -> None:
    req = request("s@x", RecipientRef(1, "@x"), RecipientRef(2, "b@x"))
    assert expand(("cmd", "u=$user"), req) == ["cmd", "u=b"]


def test_delimiter_rules() -> None:
    dash = Splitter("-+", owner_request_special=True)
    assert dash.split("owner-list") == ("owner-list", "")
    assert dash.split("list-request") == ("list-request", "")
    assert Splitter("-", owner_request_special=False).split("owner-list") == ("owner", "list")
    assert PLUS.split("Postmaster") == ("Postmaster", "")
    assert PLUS.split("postmaster+x") == ("postmaster", "x")  # only the exact name is kept
    assert PLUS.split("+lead") == ("+lead", "")
    assert PLUS.split("a+b+c") == ("a", "b+c")
    assert Splitter("").split("a+b") == ("a+b", "")
    assert recipient_values("a+b@x", "", frozenset({"user"}), "", Splitter("")) == {
        "mailbox": "a+b", "domain": "x", "user": "a+b", "extension": ""}


# --- the copy ------------------------------------------------------------------------------

def test_copy_line_quoting_and_stuffing() -> None:
    assert copy_line(b"From me", ">", b"\n") == b">From me\n"
    assert copy_line(b"From me", "", b"\n") == b"From me\n"
    assert copy_line(b"Fromage", ">", b"\n") == b"Fromage\n"
    assert copy_line(b".x", ".", b"\r\n") == b"..x\r\n"
    assert copy_line(b".x", "", b"\n") == b".x\n"
    assert copy_line(b"From x", ">.", b"\n") == b">From x\n"


def test_prepended_headers_in_postfix_order() -> None:
    rcpt = RecipientRef(1, '"a b"@x', orig_rcpt="orig@y")
    lines = prepended_lines(spec("DORF"), "s@x", rcpt, 0.0)
    assert lines[0].startswith("From s@x  ") and len(lines[0]) == len("From s@x  ") + 24
    assert lines[1:] == ["Return-Path: <s@x>", "X-Original-To: orig@y",
                         'Delivered-To: "a b"@x']
    assert prepended_lines(spec("FR"), "", rcpt, 0.0)[0].startswith("From MAILER-DAEMON  ")
    assert prepended_lines(spec("R"), "", rcpt, 0.0) == ["Return-Path: <>"]
    assert prepended_lines(spec("O"), "s", RecipientRef(1, "a@x"), 0.0) == []
    assert prepended_lines(spec(""), "s", rcpt, 0.0) == []


async def lines_of(text: bytes) -> AsyncIterator[bytes]:
    for line in text.split(b"\n"):
        yield line


async def test_delivered_to_loop_only_in_the_header_block() -> None:
    head = b"Subject: x\nDelivered-To: Other@x\nDELIVERED-TO:  U@Example.com\n\nbody\n"
    assert await delivered_to_loop(lines_of(head), "u@example.com")
    assert not await delivered_to_loop(lines_of(head), "v@example.com")
    body_only = b"Subject: x\n\nDelivered-To: u@example.com\n"
    assert not await delivered_to_loop(lines_of(body_only), "u@example.com")
    folded = b"Delivered-To:\n u@example.com\n\n"
    assert await delivered_to_loop(lines_of(folded), "u@example.com")


# --- exit status ---------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(SYSEXITS))
def test_sysexits_follow_postfix_table(code: int) -> None:
    dsn, text = SYSEXITS[code]
    outcome = command_outcome(code, b"", "/bin/cmd")
    assert (outcome.dsn, outcome.reason) == (dsn, text)
    assert outcome.status == (DEFERRED if code in (71, 75) else BOUNCED)


def test_sysexits_known_values() -> None:
    assert SYSEXITS[75] == ("4.3.0", "temporary failure")
    assert SYSEXITS[67] == ("5.1.1", "user unknown")
    assert SYSEXITS[78] == ("5.3.5", "local configuration error")
    assert set(SYSEXITS) == set(range(64, 79))


def test_outcomes() -> None:
    ok = command_outcome(0, b"fine\n", "c")
    assert (ok.status, ok.dsn, ok.reason) == (SENT, "2.0.0", "fine")
    unknown = command_outcome(3, b"oops\tbad\n", "/x/c")
    assert (unknown.status, unknown.dsn) == (BOUNCED, "5.3.0")
    assert unknown.reason == 'Command died with status 3: "/x/c". Command output: oops bad'
    temp = command_outcome(75, b"try later", "c")
    assert (temp.status, temp.reason) == (DEFERRED, "temporary failure. Command output: try later")
    signal = command_outcome(-9, b"", "c")
    assert (signal.status, signal.reason) == (DEFERRED, 'Command died with signal 9: "c"')
    slow = command_outcome(-9, b"partial", "c", timed_out=True)
    assert slow.status == DEFERRED
    assert slow.reason == 'Command time limit exceeded: "c". Command output: partial'


def test_status_code_in_output_wins_over_exit_status() -> None:
    full = command_outcome(1, b"4.2.2 mailbox full\n", "c")
    assert (full.status, full.dsn, full.reason) == (DEFERRED, "4.2.2", "mailbox full")
    gone = command_outcome(75, b"5.1.1 no such user", "c")
    assert (gone.status, gone.dsn, gone.reason) == (BOUNCED, "5.1.1", "no such user")
    odd = command_outcome(1, b"2.0.0 what", "c")
    assert (odd.status, odd.dsn) == (BOUNCED, "5.0.0")
    assert leading_dsn("5.1.10 x") == ("5.1.10", "x")
    assert leading_dsn("5.1.1000 x") is None
    assert leading_dsn("3.1.1 x") is None
    assert leading_dsn("5.1.1x") is None


def test_output_made_printable() -> None:
    assert printable_output(b"a\tb\nc\x00\xff\x1b[0m\n") == "a b c___[0m"
    assert success_reason("svc", "") == "delivered via svc service"
    assert success_reason("svc", "x" * 300) == f"delivered via svc service ({'x' * 100})"


# --- environment and privileges ------------------------------------------------------------

def test_environment_is_filtered() -> None:
    current = {"TZ": "UTC", "LANG": "C", "SECRET": "s", "PATH": "/evil", "HOME": "/root"}
    env = command_environment(("TZ", "MAIL_CONFIG", "LANG", "FOO=bar", "{ X = y z }"), current)
    assert env == {"TZ": "UTC", "LANG": "C", "FOO": "bar", "X": "y z", "PATH": DEFAULT_PATH}


@pytest.mark.parametrize("user, group, problem", [
    ("root", None, "root privileges"),
    ("nobody", "root", "group id 0"),
    ("no-such-user-here", None, "unknown user name"),
    ("nobody", "no-such-group-here", "unknown group name"),
    ("nobody", None, "mail system owner"),
])
def test_credentials_refused(user: str, group: str | None, problem: str) -> None:
    bad = PipeSpec(flags="", user=user, group=group, argv=("x",))
    with pytest.raises(ConfigError) as caught:
        command_credentials(bad, "nobody" if problem == "mail system owner" else "mailcore",
                            file="master.cf", line=3)
    assert problem in caught.value.message and caught.value.line == 3


def test_credentials_of_nobody() -> None:
    import pwd
    entry = pwd.getpwnam("nobody")
    creds = command_credentials(spec(), "mailcore")
    assert (creds.uid, creds.gid) == (entry.pw_uid, entry.pw_gid)
