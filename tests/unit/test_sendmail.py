"""sendmail submission: reading the message, -t, -i, line endings, exit statuses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailcore import maildrop
from mailcore.cli_local import run_sendmail_argv
from mailcore.config import Config, load_config
from mailcore.sendmail import (
    EX_DATAERR,
    EX_NOUSER,
    EX_OK,
    EX_USAGE,
    HeaderExtractor,
    InputLimits,
    SendmailExit,
    Submitter,
    copy_message,
    parse_argv,
    submit,
)

WHO = Submitter(uid=1234, login="alice", gecos_name="Alice Liddell")


def _submit(tmp_path: Path, argv: list[str], message: bytes, **limits: object
            ) -> tuple[maildrop.DropFile, list[bytes]]:
    writer = maildrop.MaildropWriter(tmp_path)
    name = submit(parse_argv(argv), io.BytesIO(message), writer, InputLimits(**limits),  # type: ignore[arg-type]
                  WHO, now=1000.0, environ={})
    drop = maildrop.open_drop(tmp_path / name)
    return drop, list(maildrop.read_all_lines(drop))


def test_plain_submission(tmp_path: Path) -> None:
    drop, lines = _submit(tmp_path, ["bob@example.com"], b"Subject: x\n\nhello\n")
    env = drop.envelope
    assert env.sender == "alice" and env.uid == 1234 and env.full_name == "Alice Liddell"
    assert [r.address for r in env.recipients] == ["bob@example.com"]
    assert lines == [b"Subject: x", b"", b"hello"]
    assert env.arrival_time == 1000.0


def test_lone_dot_ends_input_unless_i(tmp_path: Path) -> None:
    message = b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n"
    _, lines = _submit(tmp_path, ["b@x.org"], message)
    assert lines == [b"Subject: x", b"", b"line"]
    for flag in ("-i", "-oi"):
        _, lines = _submit(tmp_path, [flag, "b@x.org"], message)
        assert lines == [b"Subject: x", b"", b"line", b".", b"after"]


def test_line_endings_and_from_line(tmp_path: Path) -> None:
    message = b"From alice Mon Jan  1 00:00:00 2024\n>From x\nSubject: x\r\r\n\nmixed\r\nlf\n"
    _, lines = _submit(tmp_path, ["b@x.org"], message)
    assert lines == [b"Subject: x", b"", b"mixed", b"lf"]
    _, lines = _submit(tmp_path, ["b@x.org"], b"A: b\r\n\r\nx\r\n", fix_line_endings="never")
    assert lines == [b"A: b\r", b"\r", b"x\r"]


def test_extract_recipients_with_bcc_and_groups(tmp_path: Path) -> None:
    message = (b"From: alice\nTo: Bob <bob@example.com>,\n carol@example.com\n"
               b"Cc: team: dave@example.org, Erin <erin@example.org>;\n"
               b"Bcc: secret@example.net\nSubject: To: fake@example.com\n\n"
               b"To: body@example.com\n")
    drop, lines = _submit(tmp_path, ["-t", "first@example.com"], message)
    assert [r.address for r in drop.envelope.recipients] == [
        "first@example.com", "bob@example.com", "carol@example.com", "dave@example.org",
        "erin@example.org", "secret@example.net"]
    assert b"Bcc: secret@example.net" in lines  # cleanup removes it, not sendmail
    assert drop.envelope.flags == ("extract",)


def test_extract_prefers_resent_headers(tmp_path: Path) -> None:
    message = b"To: a@x.org\nResent-To: r@x.org\nCc: c@x.org\nResent-Bcc: rb@x.org\n\nb\n"
    drop, _ = _submit(tmp_path, ["-t"], message)
    assert [r.address for r in drop.envelope.recipients] == ["r@x.org", "rb@x.org"]


def test_extract_deduplicates(tmp_path: Path) -> None:
    drop, _ = _submit(tmp_path, ["-t", "a@x.org"], b"To: a@x.org, A@x.org\nCc: a@x.org\n\n")
    assert [r.address for r in drop.envelope.recipients] == ["a@x.org", "A@x.org"]


@pytest.mark.parametrize(("argv", "message", "status"), [
    (["-t"], b"Subject: none\n\nbody\n", EX_USAGE),
    ([], b"Subject: x\n\n", EX_USAGE),
    (["-t"], b"To: -oX@example.com\n\n", EX_NOUSER),
    (["-t"], b"To: |/bin/sh@example.com\n\n", EX_NOUSER),
    (["-t"], b"To: <broken\n\n", EX_DATAERR),
    (["--", "-oX"], b"x\n", EX_NOUSER),
    (["-f", "-oQ/tmp", "b@x.org"], b"x\n", EX_USAGE),
])
def test_refusals_leave_nothing(tmp_path: Path, argv: list[str], message: bytes,
                                status: int) -> None:
    with pytest.raises(SendmailExit) as info:
        _submit(tmp_path, argv, message)
    assert info.value.status == status
    assert list(tmp_path.iterdir()) == []


def test_limits(tmp_path: Path) -> None:
    with pytest.raises(SendmailExit) as info:
        _submit(tmp_path, ["b@x.org"], b"x" * 200 + b"\n", message_size_limit=100)
    assert info.value.status == EX_DATAERR
    many = b"To: " + b", ".join(b"u%d@x.org" % i for i in range(11)) + b"\n\n"
    with pytest.raises(SendmailExit) as info:
        _submit(tmp_path, ["-t"], many, extract_limit=10)
    assert info.value.status == EX_DATAERR
    drop, _ = _submit(tmp_path, ["-t"], many, extract_limit=11)
    assert len(drop.envelope.recipients) == 11
    with pytest.raises(SendmailExit):
        _submit(tmp_path, ["-t"], b"To: " + b"a" * 300 + b"@x.org\n\n", header_size_limit=100)
    assert [p.name for p in tmp_path.iterdir()] == [drop.name]


def test_header_extractor_stops_at_body() -> None:
    ex = HeaderExtractor(1000)
    sink: list[bytes] = []
    copy_message(io.BytesIO(b"To: a@x.org\nnot a header\nCc: b@x.org\n"), sink.append,
                 InputLimits(), dot_ends_input=True, extractor=ex)
    assert ex.close() == ["a@x.org"] and len(sink) == 3


def _config(tmp_path: Path) -> Config:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n"
                                      "myhostname = mx.example.com\n")
    return load_config(tmp_path)


def test_command_exit_statuses(tmp_path: Path) -> None:
    _config(tmp_path)

    def run(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = run_sendmail_argv(["-C", str(tmp_path), *argv], "sendmail",
                                   lambda d: load_config(d), stdin=io.BytesIO(stdin),
                                   out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    assert run(["bob@example.com"], b"Subject: s\n\nhi\n")[0] == EX_OK
    status, out, _ = run(["-bp"])
    assert status == EX_OK and "bob@example.com" in out and "1 Request." in out
    status, _, err = run(["-Z"])
    assert status == EX_USAGE and err.startswith("sendmail: fatal:")
    assert run(["--", "-oX"], b"x\n")[0] == EX_NOUSER
    status, _, err = run(["-q"])  # flush asks the running server; none runs here
    assert status == 69 and "the mail system is down" in err
    assert run(["-q30m", "a@b"])[0] == EX_OK
    assert run(["-bd"])[0] == 69
    assert len(list((tmp_path / "q" / "maildrop").glob("[0-9A-F]*"))) == 1


def test_subcommand_keeps_raw_words() -> None:
    import argparse

    from mailcore.cli_local import add_sendmail_parser
    from mailcore.cli_queue import add_queue_parser

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_sendmail_parser(sub)
    add_queue_parser(sub)
    ns = parser.parse_args(["sendmail", "-t", "-f", "-oQ", "--", "-oX"])
    assert ns.command == "sendmail" and ns.sendmail_argv == ["-t", "-f", "-oQ", "--", "-oX"]
    ns = parser.parse_args(["queue", "list", "--json"])
    assert ns.queue_command == "list" and ns.json
