"""main.cf parsing, defaults, typed access, warnings and errors (postconf(5) semantics)."""

from pathlib import Path

import pytest

from mailcore.config import from_mapping, load_config
from mailcore.config.maincf import comment_out_main_cf, edit_main_cf, parse_main_cf
from mailcore.config.types import BadValue, split_list, to_bool, to_time
from mailcore.errors import ConfigError


def write(tmp_path: Path, main_cf: str, master_cf: str | None = None) -> Path:
    (tmp_path / "main.cf").write_text(main_cf)
    if master_cf is not None:
        (tmp_path / "master.cf").write_text(master_cf)
    return tmp_path


def test_continuation_comments_and_blank_lines(tmp_path):
    config = load_config(write(tmp_path, (
        "# a comment\n"
        "myhostname = mx.example.com\n"
        "mydestination = $myhostname,\n"
        "    localhost.$mydomain\n"
        "# a comment between continuation lines\n"
        "\n"
        "    localhost\n"
        "mydomain = example.com\n"
    )))
    assert config.raw("mydestination") == "$myhostname, localhost.$mydomain localhost"
    assert config.get_list("mydestination") == (
        "mx.example.com", "localhost.example.com", "localhost"
    )


def test_hash_inside_value_is_not_a_comment():
    settings = parse_main_cf("smtpd_banner = $myhostname #1 ESMTP\n", "main.cf")
    assert settings[0].value == "$myhostname #1 ESMTP"


def test_last_setting_wins(tmp_path):
    config = load_config(write(tmp_path, "myorigin = a.example\nmyorigin = b.example\n"))
    assert config.get("myorigin") == "b.example"


def test_missing_equals_names_file_and_line(tmp_path):
    write(tmp_path, "myhostname = mx.example.com\n\nthis is wrong\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'main.cf'}, line 3: missing '=' after parameter name: \"this is wrong\""
    )


def test_leading_whitespace_on_first_line(tmp_path):
    write(tmp_path, "  myhostname = x\n")
    with pytest.raises(ConfigError, match="line 1: logical line must not start with white"):
        load_config(tmp_path)


def test_bad_typed_value_names_its_line(tmp_path):
    write(tmp_path, "myhostname = mx.example.com\nmessage_size_limit = ten\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.line == 2 and "message_size_limit" in info.value.message


def test_parameter_loop_is_an_error(tmp_path):
    write(tmp_path, "myhostname = $mydomain\nmydomain = x.$myhostname\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path)


def test_postfix_defaults_follow_reference():
    config = from_mapping({"myhostname": "mx.example.com"})
    assert config.get("myorigin") == "mx.example.com"
    assert config.get("mydomain") == "example.com"
    assert config.get_list("mydestination") == (
        "mx.example.com", "localhost.example.com", "localhost"
    )
    assert config.get_time("minimal_backoff_time") == 300
    assert config.get_time("maximal_backoff_time") == 4000
    assert config.get_time("maximal_queue_lifetime") == 5 * 86400
    assert config.get_int("smtpd_recipient_limit") == 1000
    assert config.get_size("message_size_limit") == 10240000
    assert config.get_int("default_destination_concurrency_limit") == 20
    assert config.get_int("initial_destination_concurrency") == 5
    assert config.get_int("default_destination_recipient_limit") == 50
    assert config.get_time("smtpd_timeout") == 300
    assert config.get("smtpd_banner") == "mx.example.com ESMTP mailcore"
    assert config.get("mynetworks_style") == "host"
    assert config.get("relay_domains") == ""
    assert config.get_bool("smtputf8_enable") is True


def test_compatibility_level_zero_gives_postfix_legacy_defaults():
    config = from_mapping({"myhostname": "mx.example.com", "compatibility_level": "0"})
    assert config.get("mynetworks_style") == "subnet"
    assert config.get("relay_domains") == config.get("mydestination")


def test_mydomain_defaults_to_localdomain_for_short_names():
    config = from_mapping({"myhostname": "mx.test"})
    assert config.get("mydomain") == "localdomain"


def test_seed_identity_examples():
    config = from_mapping({
        "myhostname": "nasa.cs.nctu.edu.tw",
        "mydomain": "cs.nctu.edu.tw",
        "myorigin": "$mydomain",
        "mydestination": "$myhostname, localhost.$mydomain $mydomain",
    })
    assert config.get("myorigin") == "cs.nctu.edu.tw"
    assert config.get_list("mydestination") == (
        "nasa.cs.nctu.edu.tw", "localhost.cs.nctu.edu.tw", "cs.nctu.edu.tw"
    )


def test_seed_scheduler_and_limit_examples():
    config = from_mapping({
        "myhostname": "mx.example.com",
        "smtp_destination_concurrency_limit": "25",
        "local_destination_concurrency_limit": "10",
        "smtp_destination_recipient_limit": "100",
        "smtpd_recipient_limit": "1000",
        "message_size_limit": "10240000",
        "queue_run_delay": "300s",
    })
    assert config.get_int("smtp_destination_concurrency_limit") == 25
    assert config.get_int("local_destination_concurrency_limit") == 10
    assert config.get_int("smtp_destination_recipient_limit") == 100
    assert config.get_int("relay_destination_concurrency_limit") == 20


def test_transport_parameters_follow_master_cf_services():
    master = "ondemand unix - - n - - smtp\n"
    config = from_mapping(
        {"myhostname": "mx.example.com", "ondemand_destination_concurrency_limit": "2"},
        master_cf=master,
    )
    assert config.warnings == ()
    assert config.get_int("ondemand_destination_concurrency_limit") == 2
    name = config.transport_param("ondemand", "_destination_recipient_limit")
    assert name == "default_destination_recipient_limit"


def test_unused_parameter_warnings(tmp_path):
    config = load_config(write(tmp_path, (
        "myhostname = mx.example.com\n"
        "my_mailbox = /srv/mail\n"
        "home_mailbox = $my_mailbox\n"
        "mesage_size_limit = 5\n"
        "smtpd_tls_CAfile = /etc/ssl/ca.pem\n"
    )))
    main_cf = tmp_path / "main.cf"
    assert config.warnings == (
        f"{main_cf}, line 4: unused parameter: mesage_size_limit=5 "
        "(did you mean message_size_limit?)",
        f"{main_cf}, line 5: Postfix parameter not implemented by mailcore: "
        "smtpd_tls_CAfile=/etc/ssl/ca.pem",
    )


def test_overrides_from_master_cf_and_service_name():
    config = from_mapping({"myhostname": "mx.example.com"})
    child = config.with_overrides(
        {"syslog_name": "mailcore/$service_name", "smtpd_recipient_limit": "10"},
        service_name="relay",
    )
    assert child.get("syslog_name") == "mailcore/relay"
    assert child.get_int("smtpd_recipient_limit") == 10
    assert config.get_int("smtpd_recipient_limit") == 1000


def test_relative_paths_are_taken_from_the_config_directory(tmp_path):
    config = load_config(write(tmp_path, "queue_directory = ../var/spool\n"))
    assert config.get_path("queue_directory") == (tmp_path.parent / "var" / "spool").resolve()


def test_typed_converters():
    assert to_bool("YES") is True and to_bool("no") is False
    with pytest.raises(BadValue):
        to_bool("true")
    assert to_time("5d") == 432000 and to_time("1h") == 3600 and to_time("30") == 30
    assert to_time("2", default_unit="h") == 7200
    with pytest.raises(BadValue):
        to_time("5x")
    assert split_list("a, b c,,d") == ("a", "b", "c", "d")
    assert split_list("inline:{ a=b, {c = d e} }, static:x") == (
        "inline:{ a=b, {c = d e} }", "static:x"
    )


def test_edit_keeps_comments_and_order(tmp_path):
    path = tmp_path / "main.cf"
    path.write_text(
        "# identity\nmyhostname = old.example\nmydestination = a,\n    b\n# tail\n"
    )
    edit_main_cf(path, {"mydestination": "c", "relayhost": "[gw.example]"})
    assert path.read_text() == (
        "# identity\nmyhostname = old.example\nmydestination = c\n# tail\n"
        "relayhost = [gw.example]\n"
    )


def test_comment_out(tmp_path):
    path = tmp_path / "main.cf"
    path.write_text("myhostname = a\nmydestination = x,\n  y\n")
    missing = comment_out_main_cf(path, ["mydestination", "relayhost"])
    assert missing == ["relayhost"]
    assert path.read_text() == "myhostname = a\n#mydestination = x,\n#  y\n"


def test_concurrency_feedback_accepts_postfix_fractions():
    config = from_mapping({
        "myhostname": "mx.example.com",
        "default_destination_concurrency_positive_feedback": "1/concurrency",
        "default_destination_concurrency_negative_feedback": "1/8",
    })
    assert config.get("default_destination_concurrency_negative_feedback") == "1/8"
