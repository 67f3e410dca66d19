"""mailcore map / mailcore alias end to end on temporary files (run_map / run_alias)."""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailcore.cli_maps import add_alias_parser, add_map_parser, run_alias, run_map


@dataclass
class FakeConfig:
    values: dict[str, str] = field(default_factory=lambda: {"default_database_type": "hash"})
    config_dir: Path = Path(".")

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def get_list(self, name: str) -> tuple[str, ...]:
        return tuple(self.get(name).replace(",", " ").split())


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mailcore")
    sub = parser.add_subparsers(dest="command")
    add_map_parser(sub)
    add_alias_parser(sub)
    return parser.parse_args(list(argv))


def mailmap(*argv: str, config: FakeConfig | None = None) -> int:
    return run_map(parse("map", *argv), config or FakeConfig())


TRANSPORT = """csie.nctu.edu.tw smtp:[mailgate.csie.nctu.edu.tw]
example.com smtp:[192.168.23.56]:20025
orillynet.com smtp
ora.com maildrop
kdent@ora.com error:no mail accepted for kdent
"""


def test_build_query_found_and_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "transport"
    src.write_text(TRANSPORT)
    assert mailmap(str(src)) == 0
    assert (tmp_path / "transport.db").exists()
    assert mailmap("-q", "Example.COM", f"hash:{src}") == 0
    assert capsys.readouterr().out == "smtp:[192.168.23.56]:20025\n"
    assert mailmap("-q", "nowhere.org", str(src)) == 1
    assert capsys.readouterr().out == ""


def test_query_keys_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "transport"
    src.write_text(TRANSPORT)
    assert mailmap(str(src)) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("ora.com\nmissing\nkdent@ora.com\n"))
    assert mailmap("-q", "-", str(src)) == 0
    assert capsys.readouterr().out == (
        "ora.com\tmaildrop\nkdent@ora.com\terror:no mail accepted for kdent\n")


def test_query_every_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r").write_text("/^(.*)@old\\.org$/ $1@new.org\n")
    (tmp_path / "c").write_text("10.0.0.0/8 OK\n")
    assert mailmap("-q", "joe@old.org", f"regexp:{tmp_path / 'r'}") == 0
    assert mailmap("-q", "10.2.3.4", f"cidr:{tmp_path / 'c'}") == 0
    assert mailmap("-q", "x", "static:1003") == 0
    assert mailmap("-q", "a", "inline:{a=1}", "static:2") == 0
    assert capsys.readouterr().out == "joe@new.org\nOK\n1003\n1\n"


def test_dump_delete_incremental_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "m"
    src.write_text("Alpha 1\nbeta 2\n")
    assert mailmap(str(src)) == 0
    assert mailmap("-s", str(src)) == 0
    assert capsys.readouterr().out == "alpha\t1\nbeta\t2\n"
    assert mailmap("-d", "BETA", str(src)) == 0
    assert mailmap("-d", "beta", str(src)) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("gamma 3\nalpha 9\n"))
    assert mailmap("-i", str(src)) == 0
    assert "duplicate entry" in capsys.readouterr().err
    assert mailmap("-s", str(src)) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["alpha\t1", "gamma\t3"]
    monkeypatch.setattr("sys.stdin", io.StringIO("alpha 9\n"))
    assert mailmap("-i", "-r", str(src)) == 0
    assert mailmap("-q", "alpha", str(src)) == 0
    assert capsys.readouterr().out == "9\n"
    assert mailmap("-f", str(src)) == 0  # rebuild keeping case
    assert mailmap("-f", "-q", "Alpha", str(src)) == 0
    assert mailmap("-f", "-q", "alpha", str(src)) == 1


def test_duplicate_first_wins_or_last_with_r(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "d"
    src.write_text("k first\nk second\n")
    assert mailmap(str(src)) == 0
    assert f'{src}, line 2: duplicate entry: "k"' in capsys.readouterr().err
    assert mailmap("-q", "k", str(src)) == 0
    assert capsys.readouterr().out == "first\n"
    assert mailmap("-r", str(src)) == 0
    assert mailmap("-q", "k", str(src)) == 0
    assert capsys.readouterr().out.endswith("second\n")


def test_default_database_type(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_text("k v\n")
    assert mailmap(str(src), config=FakeConfig({"default_database_type": "cdb"})) == 0
    assert (tmp_path / "x.cdb").exists() and not (tmp_path / "x.db").exists()


def test_errors_are_messages_not_tracebacks(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert mailmap(str(tmp_path / "missing")) == 1
    assert capsys.readouterr().err.startswith("mailcore map: open ")
    (tmp_path / "r").write_text("/ok/ 1\n/(/ 2\n")
    assert mailmap("-q", "x", f"regexp:{tmp_path / 'r'}") == 1
    assert capsys.readouterr().err.startswith(f"mailcore map: {tmp_path / 'r'}, line 2: ")
    assert mailmap("-q", "x", "nis:mail.aliases") == 1
    assert "unsupported dictionary type: nis" in capsys.readouterr().err
    assert mailmap(f"regexp:{tmp_path / 'r'}") == 1
    assert "no index to build" in capsys.readouterr().err
    assert mailmap("-q", "k", str(tmp_path / "never-built")) == 1
    assert "open database" in capsys.readouterr().err


ALIASES = """# aliases
postmaster: root
root: chwong,
  "|/usr/bin/vacation chwong", /var/log/root.mail
"Quoted Name": :include:/etc/mail/staff
Staff : a@x.org, b@y.org
broken line without colon
"""


def test_alias_build_query_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "aliases"
    src.write_text(ALIASES)
    assert run_alias(parse("alias", str(src)), FakeConfig()) == 0
    assert f"{src}, line 7: need name:value pair" in capsys.readouterr().err
    assert run_alias(parse("alias", "-q", "ROOT", str(src)), FakeConfig()) == 0
    assert capsys.readouterr().out == (
        'chwong, "|/usr/bin/vacation chwong", /var/log/root.mail\n')
    assert run_alias(parse("alias", "-q", "quoted name", str(src)), FakeConfig()) == 0
    assert capsys.readouterr().out == ":include:/etc/mail/staff\n"
    assert run_alias(parse("alias", "-s", str(src)), FakeConfig()) == 0
    assert "staff: a@x.org, b@y.org\n" in capsys.readouterr().out
    assert run_alias(parse("alias", "-d", "staff", str(src)), FakeConfig()) == 0
    assert run_alias(parse("alias", "-q", "staff", str(src)), FakeConfig()) == 1


def test_newaliases_uses_alias_database(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("root: admin\n")
    other = tmp_path / "more"
    other.write_text("x: y\n")
    cfg = FakeConfig({"default_database_type": "hash",
                      "alias_database": f"hash:{src}, lmdb:{other}"})
    assert run_alias(parse("alias"), cfg) == 0
    assert (tmp_path / "aliases.db").exists() and (tmp_path / "more.lmdb").exists()
    assert run_alias(parse("alias"), FakeConfig()) == 1
