"""`mailcore check` (postfix check): tables probed, restrictions built, unsafe settings and
permissions reported, exit status 1 only when mail cannot flow as configured."""

from __future__ import annotations

from pathlib import Path

from mailcore.check import ERROR, INFO, WARNING, check
from mailcore.cli import main
from mailcore.config import load_config


def write(tmp_path: Path, main_cf: str, master_cf: str = "") -> Path:
    (tmp_path / "main.cf").write_text("myhostname = mx.example.test\nalias_maps =\n" + main_cf)
    (tmp_path / "master.cf").write_text(master_cf)
    return tmp_path


def texts(findings, level):  # type: ignore[no-untyped-def]
    return [f.text for f in findings if f.level == level]


async def test_clean_configuration_has_only_information(tmp_path):
    findings = await check(load_config(write(tmp_path, "")))
    assert texts(findings, ERROR) == []
    assert any(t.startswith("delivery privileges:") for t in texts(findings, INFO))


async def test_broken_table_is_an_error_naming_parameter_file_and_line(tmp_path):
    (tmp_path / "virtual").write_text("/ok/ fine\n/broken(/ x\n")
    findings = await check(load_config(write(
        tmp_path, f"virtual_alias_maps = regexp:{tmp_path}/virtual\n")))
    [error] = texts(findings, ERROR)
    assert error.startswith(f"parameter virtual_alias_maps: {tmp_path}/virtual, line 2:")


async def test_missing_indexed_table_and_unknown_restriction(tmp_path):
    findings = await check(load_config(write(
        tmp_path, f"transport_maps = hash:{tmp_path}/transport\n"
                  "smtpd_relay_restrictions = permit_mynetworks, no_such_thing, "
                  "reject_unauth_destination\n")))
    errors = texts(findings, ERROR)
    assert any("parameter transport_maps" in e and "transport.db" in e for e in errors)
    assert any("unknown restriction: no_such_thing" in e for e in errors)


async def test_unsafe_settings_and_unused_parameters_warn(tmp_path):
    findings = await check(load_config(write(
        tmp_path, "mynetworks = 0.0.0.0/0\nsmtpd_recipient_restrictions = permit\n"
                  "mesage_size_limit = 10\nallow_mail_to_commands = alias, forward, include\n")))
    warnings = texts(findings, WARNING)
    assert any("mynetworks contains 0.0.0.0/0" in w for w in warnings)
    assert any("smtpd_recipient_restrictions starts with permit" in w for w in warnings)
    assert any("did you mean message_size_limit?" in w for w in warnings)
    assert any("allow_mail_to_commands includes 'include'" in w for w in warnings)


async def test_world_writable_table_and_bad_pipe_service(tmp_path):
    table = tmp_path / "access"
    table.write_text("spammer@example.com REJECT\n")
    table.chmod(0o666)
    findings = await check(load_config(write(
        tmp_path, f"smtpd_sender_restrictions = check_sender_access texthash:{table}\n",
        "bad unix - n n - - pipe flags=R user=nobody argv=/bin/cat ${no_such_macro}\n")))
    assert any(f"{table}: writable by group or others" in w for w in texts(findings, WARNING))
    assert any("no_such_macro" in e for e in texts(findings, ERROR))


def test_exit_status(tmp_path, capsys):
    write(tmp_path, "")
    assert main(["-c", str(tmp_path), "check"]) == 0
    (tmp_path / "main.cf").write_text("myhostname = a.b\ntransport_maps = hash:/nonexistent\n")
    assert main(["-c", str(tmp_path), "check"]) == 1
    assert "mailcore check: error: parameter transport_maps" in capsys.readouterr().err
