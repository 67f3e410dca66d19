"""`mailcore config` behaves like postconf(1): -d -n -h -x -e -# -m -M -j, and errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.cli import main

MAIN_CF = """\
# identity
myhostname = mx.example.com
mydestination = $myhostname,
    localhost
relayhost = [gw.example.com]
"""

MASTER_CF = """\
127.0.0.1:2525 inet n - n - - smtpd
    -o smtpd_recipient_limit=10
smtp      unix  -       -       n       -       -       smtp
ondemand  unix  -       -       n       -       -       smtp
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(MAIN_CF)
    (tmp_path / "master.cf").write_text(MASTER_CF)
    return tmp_path


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_value_as_written_and_expanded(confdir, capsys):
    assert run(capsys, "-c", str(confdir), "config", "mydestination") == (
        0, "mydestination = $myhostname, localhost\n", "")
    assert run(capsys, "-c", str(confdir), "config", "-x", "mydestination")[1] == (
        "mydestination = mx.example.com, localhost\n")
    assert run(capsys, "config", "-c", str(confdir), "-h", "myhostname")[1] == "mx.example.com\n"


def test_defaults_and_non_default(confdir, capsys):
    _, out, _ = run(capsys, "-c", str(confdir), "config", "-d", "relayhost", "mydestination")
    assert out == "relayhost =\nmydestination = $myhostname, localhost.$mydomain, localhost\n"
    _, out, _ = run(capsys, "-c", str(confdir), "config", "-n")
    assert out.splitlines() == [
        "mydestination = $myhostname, localhost",
        "myhostname = mx.example.com",
        "relayhost = [gw.example.com]",
    ]


def test_all_parameters_are_printed(confdir, capsys):
    status, out, _ = run(capsys, "-c", str(confdir), "config")
    lines = out.splitlines()
    assert status == 0 and len(lines) > 250
    assert "maximal_backoff_time = 4000s" in lines
    assert lines == sorted(lines, key=lambda line: line.split(" =")[0])


def test_unknown_parameter_is_reported(confdir, capsys):
    status, out, err = run(capsys, "-c", str(confdir), "config", "no_such_thing")
    assert status == 1 and out == ""
    assert "no_such_thing: unknown parameter" in err


def test_edit_and_comment_out(confdir, capsys):
    assert run(capsys, "-c", str(confdir), "config", "-e", "relayhost=[other.example]",
               "queue_run_delay = 60s")[0] == 0
    text = (confdir / "main.cf").read_text()
    assert "relayhost = [other.example]\n" in text and text.startswith("# identity\n")
    assert text.endswith("queue_run_delay = 60s\n")
    assert run(capsys, "-c", str(confdir), "config", "-#", "relayhost")[0] == 0
    assert "#relayhost = [other.example]\n" in (confdir / "main.cf").read_text()


def test_edit_without_equals_is_a_usage_error(confdir, capsys):
    status, _, err = run(capsys, "-c", str(confdir), "config", "-e", "relayhost")
    assert status == 64 and "name=value" in err


def test_json(confdir, capsys):
    _, out, _ = run(capsys, "-c", str(confdir), "config", "-j", "-x", "myorigin")
    assert json.loads(out) == {"myorigin": "mx.example.com"}


def test_table_types(capsys):
    _, out, _ = run(capsys, "config", "-m")
    types = out.split()
    for expected in ("cidr", "hash", "inline", "pcre", "regexp", "static", "texthash"):
        assert expected in types


def test_master_services(confdir, capsys):
    _, out, _ = run(capsys, "-c", str(confdir), "config", "-M", "127.0.0.1:2525/inet")
    assert out.startswith("127.0.0.1:2525 inet")
    assert "-o smtpd_recipient_limit=10" in out
    _, out, _ = run(capsys, "-c", str(confdir), "config", "-M", "-j")
    assert [s["service"] for s in json.loads(out)] == ["127.0.0.1:2525", "smtp", "ondemand"]


def test_bad_main_cf_names_file_and_line_without_traceback(tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = a.example\nbroken line\n")
    result = subprocess.run(
        [sys.executable, "-m", "mailcore.cli", "-c", str(tmp_path), "config"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"mailcore config: fatal: {tmp_path / 'main.cf'}, line 2: "
        "missing '=' after parameter name: \"broken line\"\n"
    )


def test_environment_fallback_for_the_config_directory(confdir, capsys, monkeypatch):
    monkeypatch.setenv("MAILCORE_CONFIG_DIR", str(confdir))
    assert run(capsys, "config", "-h", "relayhost")[1] == "[gw.example.com]\n"


def test_missing_config_directory(tmp_path, capsys):
    status, _, err = run(capsys, "-c", str(tmp_path / "nope"), "config")
    assert status == 1 and "configuration directory does not exist" in err
