"""master.cf parsing (Postfix master(5) syntax), formatting and the inert-service report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailcore.config.master import (
    MasterConfig,
    Service,
    format_service,
    load_master_cf,
    parse_master_cf,
    resolve_port,
)
from mailcore.errors import ConfigError

STOCK = Path("/work/shared/reference/master-cf-services-3.7.txt")

SEED = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:2525 inet n - n - - smtpd -o smtpd_recipient_limit=10
ondemand  unix  -       -       n       -       -       smtp
maildrop unix - n n - - pipe flags=DRhu user=vmail argv=/usr/local/bin/maildrop -d ${recipient}
"""


def parse(text: str) -> MasterConfig:
    return parse_master_cf(text, "master.cf")


def only(text: str) -> Service:
    services = parse(text).services
    assert len(services) == 1
    return services[0]


def comparable(service: Service) -> dict[str, object]:
    """Every field except where it came from."""
    fields = dataclasses.asdict(service)
    del fields["file"], fields["line"]
    return fields


# --- the stock Postfix 3.7 file ---------------------------------------------------------


def test_stock_file_parses_every_service_in_order() -> None:
    text = STOCK.read_text()
    starts = [line.split()[:2] for line in text.splitlines() if line and not line[0].isspace()]
    config = load_master_cf(STOCK)
    assert [[s.name, s.type] for s in config.services] == starts
    assert all(s.file == str(STOCK) for s in config.services)
    assert config.services[0].line == 1


def test_stock_file_listeners_and_transports() -> None:
    config = load_master_cf(STOCK)
    assert [s.key for s in config.listeners()] == ["smtp/inet"]
    smtp = config.listeners()[0]
    assert (smtp.host, smtp.port, smtp.private, smtp.chroot) == (None, "smtp", False, True)
    assert set(config.transports()) == {
        "smtp", "relay", "error", "retry", "discard", "local", "virtual", "lmtp",
        "maildrop", "uucp", "ifmail", "bsmtp", "scalemail-backend", "mailman",
    }
    assert config.transports()["retry"].command == "error"


def test_stock_file_columns_take_postfix_defaults() -> None:
    config = load_master_cf(STOCK)
    tlsmgr = config.get("tlsmgr", "unix")
    assert tlsmgr is not None
    assert (tlsmgr.wakeup, tlsmgr.wakeup_conditional, tlsmgr.maxproc) == (1000, True, 1)
    assert (tlsmgr.private, tlsmgr.unpriv, tlsmgr.chroot) == (True, True, True)
    pickup = config.get("pickup", "unix")
    assert pickup is not None
    assert (pickup.wakeup, pickup.wakeup_conditional, pickup.private) == (60, False, False)
    cleanup = config.get("cleanup", "unix")
    rewrite = config.get("rewrite", "unix")
    assert cleanup is not None and rewrite is not None
    assert (cleanup.maxproc, cleanup.wakeup) == (0, None)
    assert rewrite.maxproc is None
    local = config.get("local", "unix")
    assert local is not None
    assert (local.unpriv, local.chroot) == (False, False)
    postlog = config.get("postlog", "unix-dgram")
    assert postlog is not None and postlog.command == "postlogd"


def test_dash_columns_take_postfix_3_defaults() -> None:
    service = only("x unix - - - - - smtp\n")
    assert (service.private, service.unpriv, service.chroot) == (True, True, False)
    assert (service.wakeup, service.wakeup_conditional, service.maxproc) == (None, False, None)
    explicit = only("x unix n n y 5 7 smtp\n")
    assert (explicit.private, explicit.unpriv, explicit.chroot) == (False, False, True)
    assert (explicit.wakeup, explicit.maxproc) == (5, 7)


def test_stock_file_relay_override_kept_unexpanded() -> None:
    relay = load_master_cf(STOCK).get("relay", "unix")
    assert relay is not None
    assert relay.overrides == (("syslog_name", "postfix/$service_name"),)
    assert relay.args == ("-o", "syslog_name=postfix/$service_name")
    assert relay.line == 15


def test_stock_file_pipe_services() -> None:
    config = load_master_cf(STOCK)
    maildrop = config.get("maildrop", "unix")
    assert maildrop is not None and maildrop.pipe is not None
    assert maildrop.pipe.flags == "DRXhu"
    assert maildrop.pipe.user == "vmail"
    assert maildrop.pipe.argv == ("/usr/bin/maildrop", "-d", "${recipient}")
    uucp = config.get("uucp", "unix")
    assert uucp is not None and uucp.pipe is not None
    assert uucp.pipe.argv == ("uux", "-r", "-n", "-z", "-a$sender", "-", "$nexthop!rmail",
                              "($recipient)")
    scalemail = config.get("scalemail-backend", "unix")
    assert scalemail is not None and scalemail.pipe is not None
    assert scalemail.maxproc == 2
    assert scalemail.pipe.argv[-2:] == ("${user}", "${extension}")


def test_stock_file_every_service_is_used_or_reported_inert() -> None:
    config = load_master_cf(STOCK)
    used = {s.key for s in config.listeners()} | {s.key for s in config.transports().values()}
    inert = {s.key for s, _ in config.inert()}
    assert {s.key for s in config.services} == used | inert
    for key in ("pickup/unix", "cleanup/unix", "qmgr/unix", "rewrite/unix", "postlog/unix-dgram",
                "proxywrite/unix", "tlsmgr/unix", "showq/unix"):
        assert key in inert and key not in used
    reasons = {(s.key, r) for s, r in config.inert()}
    assert any(k == "smtp/inet" and r.startswith("chroot") for k, r in reasons)
    assert any(k == "local/unix" and r.startswith("unpriv") for k, r in reasons)


def test_stock_file_survives_format_and_reparse() -> None:
    config = load_master_cf(STOCK)
    for service in config.services:
        again = only(format_service(service))
        assert comparable(again) == comparable(service), service.key


# --- the seed and the brief's samples -----------------------------------------------------


def test_seed_services() -> None:
    config = parse(SEED)
    listener = config.listeners()[0]
    assert (listener.name, listener.host, listener.port) == ("127.0.0.1:2525", "127.0.0.1", "2525")
    assert listener.overrides == (("smtpd_recipient_limit", "10"),)
    assert listener.line == 2
    transports = config.transports()
    assert transports["ondemand"].command == "smtp"
    assert transports["ondemand"].chroot is False
    pipe = transports["maildrop"].pipe
    assert pipe is not None
    assert (pipe.flags, pipe.user, pipe.group) == ("DRhu", "vmail", None)
    assert pipe.argv == ("/usr/local/bin/maildrop", "-d", "${recipient}")
    assert transports["maildrop"].line == 4


def test_overrides_in_both_forms_with_comments_between_continuations() -> None:
    text = (
        "submission inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "# a comment inside the entry\n"
        "\n"
        "  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n"
        "  -o smtpd_helo_restrictions=\n"
        "  -osmtpd_tls_security_level=encrypt\n"
        "  -o {milter_macro_daemon_name=ORIGINATING}\n"
        "next unix - - n - - smtp\n"
    )
    config = parse(text)
    submission = config.services[0]
    assert submission.overrides == (
        ("syslog_name", "postfix/submission"),
        ("smtpd_client_restrictions", "permit_sasl_authenticated, reject"),
        ("smtpd_helo_restrictions", ""),
        ("smtpd_tls_security_level", "encrypt"),
        ("milter_macro_daemon_name", "ORIGINATING"),
    )
    assert submission.args[2:4] == ("-o", "smtpd_client_restrictions=permit_sasl_authenticated, "
                                          "reject")
    assert config.services[1].line == 9
    assert submission.override_map["smtpd_helo_restrictions"] == ""


def test_later_override_wins_in_override_map() -> None:
    service = only("smtp inet n - n - - smtpd -o a=1 -o b=2 -o a=3\n")
    assert service.overrides == (("a", "1"), ("b", "2"), ("a", "3"))
    assert dict(service.override_map) == {"a": "3", "b": "2"}


def test_verbose_and_debug_flags() -> None:
    service = only("smtp inet n - n - - smtpd -v -vD -o a=b\n")
    assert (service.verbose, service.debug) == (2, True)
    assert service.overrides == (("a", "b"),)
    reasons = [r for _, r in parse("smtp inet n - n - - smtpd -v -vD -o a=b\n").inert()]
    assert any(r.startswith("-D") for r in reasons) and any(r.startswith("-v") for r in reasons)


@pytest.mark.parametrize(("name", "host", "port"), [
    ("smtp", None, "smtp"),
    ("2525", None, "2525"),
    (":2525", None, "2525"),
    ("127.0.0.1:2525", "127.0.0.1", "2525"),
    ("[::1]:2526", "::1", "2526"),
    ("[127.0.0.1]:submission", "127.0.0.1", "submission"),
    ("[ipv6:::1]:25", "::1", "25"),
    ("localhost:smtp", "localhost", "smtp"),
    ("::1:2527", "::1", "2527"),
])
def test_inet_listen_addresses(name: str, host: str | None, port: str) -> None:
    service = only(f"{name} inet n - n - - smtpd\n")
    assert (service.host, service.port) == (host, port)
    assert service.key == f"{name}/inet"


def test_unix_services_have_no_listen_address() -> None:
    service = only("smtp unix - - n - - smtp\n")
    assert (service.host, service.port, service.pipe) == (None, None, None)


def test_pipe_attributes() -> None:
    text = (
        "filter unix - n n - 10 pipe\n"
        "  FLAGS=Rq. user=filter:mail size=1048576 eol=\\r\\n directory=/var/spool/filter\n"
        "  null_sender= argv=/usr/bin/filter { -s ${sender} } -- ${recipient}\n"
    )
    service = only(text)
    pipe = service.pipe
    assert pipe is not None
    assert (pipe.flags, pipe.user, pipe.group) == ("Rq.", "filter", "mail")
    assert (pipe.size_limit, pipe.eol, pipe.directory) == (1048576, "\r\n", "/var/spool/filter")
    assert pipe.null_sender == ""
    assert pipe.argv == ("/usr/bin/filter", "-s ${sender}", "--", "${recipient}")
    assert service.maxproc == 10


def test_pipe_defaults_and_octal_eol() -> None:
    pipe = only("p unix - n n - - pipe user=u eol=\\015\\12 argv=/bin/cat\n").pipe
    assert pipe is not None
    assert (pipe.flags, pipe.size_limit, pipe.eol) == ("", None, "\r\n")
    assert (pipe.null_sender, pipe.directory, pipe.chroot) == ("MAILER-DAEMON", None, None)
    assert only("p unix - n n - - pipe size=0 user=u argv=/bin/cat\n").pipe.size_limit is None  # type: ignore[union-attr]


def test_pipe_options_before_attributes() -> None:
    service = only("p unix - n n - - pipe -o pipe_time_limit=10 user=u argv=/bin/cat\n")
    assert service.overrides == (("pipe_time_limit", "10"),)
    assert service.pipe is not None and service.pipe.argv == ("/bin/cat",)


@pytest.mark.parametrize(("wakeup", "seconds", "conditional"), [
    ("-", None, False), ("0", None, False), ("0?", None, False), ("60", 60, False),
    ("1000?", 1000, True),
])
def test_wakeup_column(wakeup: str, seconds: int | None, conditional: bool) -> None:
    service = only(f"flush unix n - n {wakeup} 0 flush\n")
    assert (service.wakeup, service.wakeup_conditional) == (seconds, conditional)


def test_crlf_line_endings_and_tab_continuations() -> None:
    service = only("relay unix - - n - - smtp\r\n\t-o a=b\r\n")
    assert service.overrides == (("a", "b"),)


def test_empty_text_gives_no_services() -> None:
    config = parse("# nothing\n\n   \n")
    assert config.services == ()
    assert config.listeners() == () and dict(config.transports()) == {} and config.inert() == ()


def test_model_is_immutable() -> None:
    config = parse(SEED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.services[0].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.transports()["x"] = config.services[0]  # type: ignore[index]


def test_get_finds_by_name_and_type() -> None:
    config = parse("smtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n")
    inet, unix = config.get("smtp", "inet"), config.get("smtp", "unix")
    assert inet is not None and inet.command == "smtpd"
    assert unix is not None and unix.command == "smtp"
    assert config.get("smtp", "fifo") is None
    assert config.get("relay", "unix") is None


# --- inert services and fields ---------------------------------------------------------


def test_inert_reports_unsupported_entries_with_reasons() -> None:
    text = (
        "smtp inet n - n - 1 postscreen\n"
        "smtpd pass - - n - - smtpd\n"
        "2525 inet n - n - - smtp\n"
        "policy unix - n n - 0 spawn user=nobody argv=/bin/policy\n"
        "local unix - n y - - local\n"
        "relay unix n - n - - smtp extra words\n"
        "fast unix - - n - - smtp\n"
    )
    config = parse(text)
    reasons: dict[str, list[str]] = {}
    for service, reason in config.inert():
        reasons.setdefault(service.key, []).append(reason)
    assert "postscreen" in reasons["smtp/inet"][0]
    assert "smtpd on a pass service" in reasons["smtpd/pass"][0]
    assert "inet" in reasons["2525/inet"][0]
    assert "spawn" in reasons["policy/unix"][0]
    assert sorted(r.split(":")[0] for r in reasons["local/unix"]) == ["chroot y", "unpriv n"]
    assert any(r.startswith("private n") for r in reasons["relay/unix"])
    assert any("extra words" in r for r in reasons["relay/unix"])
    assert "fast/unix" not in reasons
    assert config.listeners() == ()
    assert set(config.transports()) == {"local", "relay", "fast"}


# --- formatting --------------------------------------------------------------------------


def test_format_matches_postconf_layout() -> None:
    config = load_master_cf(STOCK)
    relay, maildrop = config.get("relay", "unix"), config.get("maildrop", "unix")
    assert relay is not None and maildrop is not None
    assert format_service(relay) == (
        "relay      unix  -       -       y       -       -       smtp\n"
        "    -o syslog_name=postfix/$service_name"
    )
    assert format_service(maildrop) == (
        "maildrop   unix  -       n       n       -       -       pipe flags=DRXhu\n"
        "    user=vmail argv=/usr/bin/maildrop -d ${recipient}"
    )


def test_format_braces_values_with_spaces_and_round_trips() -> None:
    text = ("submission inet n - n - - smtpd -v -o { smtpd_client_restrictions = a, b }\n"
            "  -o smtpd_helo_restrictions=\n")
    service = only(text)
    shown = format_service(service)
    assert shown.splitlines() == [
        "submission inet  n       -       n       -       -       smtpd -v",
        "    -o {smtpd_client_restrictions=a, b}",
        "    -o smtpd_helo_restrictions=",
    ]
    assert comparable(only(shown)) == comparable(service)


def test_format_pipe_argument_with_spaces_round_trips() -> None:
    service = only("p unix - n n - - pipe user=u argv=/bin/x { a b } ${recipient}\n")
    assert comparable(only(format_service(service))) == comparable(service)
    assert "{a b}" in format_service(service)


def test_format_without_written_columns_uses_values() -> None:
    service = dataclasses.replace(only("f unix n - n 30? 0 flush\n"), columns=())
    assert format_service(service).split() == ["f", "unix", "n", "y", "n", "30?", "0", "flush"]


# --- ports --------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "number"), [
    ("smtp", 25), ("submission", 587), ("submissions", 465), ("smtps", 465), ("lmtp", 24),
    ("SMTP", 25), ("2525", 2525), ("1", 1), ("65535", 65535),
])
def test_resolve_port(port: str, number: int) -> None:
    assert resolve_port(port) == number


def test_port_zero_means_any_free_port() -> None:
    assert resolve_port("0") == 0


@pytest.mark.parametrize("port", ["imap", "65536", "25x", "", "http"])
def test_resolve_port_rejects(port: str) -> None:
    with pytest.raises(ConfigError):
        resolve_port(port)


def test_resolve_port_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_port("imap", file="master.cf", line=7)
    assert str(caught.value).startswith("master.cf, line 7: ")


# --- errors ------------------------------------------------------------------------------

ERRORS = [
    ("smtp tcp n - n - - smtpd", "unknown service type"),
    ("smtp inet n - n x - smtpd", "wakeup field"),
    ("smtp inet n - n 5?x - smtpd", "wakeup field"),
    ("smtp inet n - n ? - smtpd", "wakeup field"),
    ("smtp inet n - n - -1 smtpd", "maxproc field"),
    ("smtp inet n - n - many smtpd", "maxproc field"),
    ("smtp inet n - n - 99999999999 smtpd", "maxproc field"),
    ("smtp inet n - n - -", 'missing "command" field'),
    ("smtp", 'missing "type" field'),
    ("smtp inet n - yes - - smtpd", "chroot field"),
    ("smtp inet N - n - - smtpd", "private field"),
    ("smtp inet y - n - - smtpd", "cannot be private"),
    ("smtp inet - - n - - smtpd", "cannot be private"),
    ("smtp inet n - n - - smtpd -o novalue", "expected name=value"),
    ("smtp inet n - n - - smtpd -o { = x }", "parameter name"),
    ("smtp inet n - n - - smtpd -o", "-o needs"),
    ("smtp inet n - n - - smtpd -x", "unknown daemon option"),
    ("smtp inet n - n - - smtpd -o { a = b", 'missing "}"'),
    ("smtp inet n - n - - smtpd -o {a=b}c", 'text after "}"'),
    ("imap inet n - n - - smtpd", 'unknown service name "imap"'),
    ("99999 inet n - n - - smtpd", "out of range"),
    ("[::1 inet n - n - - smtpd", 'missing "]"'),
    ("[::1]x inet n - n - - smtpd", 'after "]"'),
    ("[::1] inet n - n - - smtpd", "no port"),
    ("127.0.0.1: inet n - n - - smtpd", "no port"),
    ("[]:25 inet n - n - - smtpd", "bad host"),
    ("999.1.1.1:25 inet n - n - - smtpd", "bad host"),
    ("bad_host!:25 inet n - n - - smtpd", "bad host"),
    ("25x inet n - n - - smtpd", "bad port"),
    ("[ipv6:127.0.0.1]:25 inet n - n - - smtpd", "bad IPv6"),
    ("p unix - n n - - pipe flags=R user=u", "missing argv="),
    ("p unix - n n - - pipe flags=R argv=/bin/cat", "missing user="),
    ("p unix - n n - - pipe flags=Rz user=u argv=/bin/cat", "unknown flag"),
    ("p unix - n n - - pipe user=u home=/x argv=/bin/cat", "unknown attribute"),
    ("p unix - n n - - pipe user=u -o a=b argv=/bin/cat", "unknown attribute"),
    ("p unix - n n - - pipe user=u size=10k argv=/bin/cat", "size="),
    ("p unix - n n - - pipe user=root argv=/bin/cat", "root"),
    ("p unix - n n - - pipe user=:grp argv=/bin/cat", "user name"),
    ("p unix - n n - - pipe user=u argv=", "needs a command"),
]


@pytest.mark.parametrize(("line", "expected"), ERRORS)
def test_errors_name_file_line_and_problem(line: str, expected: str) -> None:
    text = "# header\nok unix - - n - - smtp\n" + line + "\n"
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert (caught.value.file, caught.value.line) == ("master.cf", 3)
    assert expected in caught.value.message
    assert str(caught.value).startswith("master.cf, line 3: ")


def test_error_in_continuation_reports_first_line_of_the_entry() -> None:
    text = "relay unix - - n - - smtp\n  -o a=b\n\n  -o broken\n"
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.line == 1


def test_duplicate_service_is_an_error() -> None:
    text = "smtp unix - - n - - smtp\nsmtp inet n - n - - smtpd\n\nsmtp unix - - n - - lmtp\n"
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.line == 4
    assert "duplicate service smtp/unix" in caught.value.message
    assert "line 1" in caught.value.message


def test_continuation_without_service_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("# comment\n  -o a=b\nsmtp unix - - n - - smtp\n")
    assert caught.value.line == 2


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "master.cf"
    with pytest.raises(ConfigError) as caught:
        load_master_cf(missing)
    assert caught.value.file == str(missing)
    missing.write_bytes(b"smtp unix - - n - - smtp \xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_master_cf(missing)


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "master.cf"
    path.write_text(SEED)
    config = load_master_cf(path)
    assert [s.key for s in config.services] == ["127.0.0.1:2525/inet", "ondemand/unix",
                                                "maildrop/unix"]
    assert config.services[2].file == str(path)
