"""`mailcore route`: every step explained, text and --json, on a temporary configuration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mailcore.cli_route import add_route_parser, explain_route, format_report, run_route
from mailcore.config import load_config
from mailcore.errors import UsageError
from mailcore.tables import TableSet

MAIN_CF = """\
myhostname = mx.cs.nctu.edu.tw
mydomain = cs.nctu.edu.tw
myorigin = $mydomain
mydestination = $myhostname, $mydomain
inet_interfaces = 127.0.0.1
recipient_delimiter = +
canonical_maps = texthash:canonical
virtual_alias_domains = abc.com.tw
virtual_alias_maps = texthash:virtual
relocated_maps = texthash:relocated
sender_bcc_maps = texthash:sbcc
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(MAIN_CF)
    (tmp_path / "canonical").write_text("boss ceo@abc.com.tw\n")
    (tmp_path / "virtual").write_text("ceo@abc.com.tw andy\n")
    (tmp_path / "relocated").write_text("andy andy@new.org\n")
    (tmp_path / "sbcc").write_text("joe@cs.nctu.edu.tw archive\n")
    return tmp_path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_route_parser(sub)
    return parser.parse_args(["route", *argv])


async def test_report_has_every_step(confdir: Path) -> None:
    tables = TableSet(base_dir=confdir)
    report = await explain_route(load_config(confdir), tables, "boss+x", sender="joe",
                                 client="127.0.0.1")
    stages = [s.stage for s in report.steps]
    assert stages.index("canonical_maps") < stages.index("virtual_alias_maps")
    canon = next(s for s in report.steps if s.stage == "canonical_maps" and s.table)
    assert canon.keys == ("boss+x@cs.nctu.edu.tw", "boss@cs.nctu.edu.tw", "boss+x", "boss")
    assert (canon.key, canon.value) == ("boss", "ceo@abc.com.tw")
    assert canon.result == ("ceo+x@abc.com.tw",)
    assert [r.address for r in report.recipients] == ["archive@cs.nctu.edu.tw",
                                                      "andy+x@cs.nctu.edu.tw"]
    assert report.recipients[1].orig_rcpt == "boss+x"
    assert report.relocated == (("andy+x@cs.nctu.edu.tw", "andy@new.org"),)
    assert report.sender == "joe@cs.nctu.edu.tw"
    assert report.header_context == "local"
    text = format_report(report)
    assert "keys tried: boss+x@cs.nctu.edu.tw, boss@cs.nctu.edu.tw, boss+x, boss" in text
    assert "matched: texthash:canonical: boss -> ceo@abc.com.tw" in text
    assert "User has moved to andy@new.org" in text


async def test_refused_recipient(confdir: Path) -> None:
    report = await explain_route(load_config(confdir), TableSet(base_dir=confdir),
                                 "<nobody@abc.com.tw>")
    assert report.recipients == ()
    assert report.failures[0].status == "5.1.1"
    assert "refused: nobody@abc.com.tw: 550 5.1.1 User unknown in virtual alias table" in (
        format_report(report))


async def test_bad_address_is_usage_error(confdir: Path) -> None:
    with pytest.raises(UsageError):
        await explain_route(load_config(confdir), TableSet(), "a..b@x.org")
    with pytest.raises(UsageError):
        await explain_route(load_config(confdir), TableSet(), "<>")


def test_run_route_text_and_json(confdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_route(parse("ceo@abc.com.tw"), lambda: load_config(confdir)) == 0
    out = capsys.readouterr().out
    assert "final recipients:\n  andy@cs.nctu.edu.tw (original recipient ceo@abc.com.tw)" in out
    assert run_route(parse("ceo@abc.com.tw", "--json", "--sender", ""),
                     lambda: load_config(confdir)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recipients"] == [{"address": "andy@cs.nctu.edu.tw",
                                   "orig_rcpt": "ceo@abc.com.tw", "notify": None}]
    assert data["sender"] == ""
    virtual = [s for s in data["steps"] if s["stage"] == "virtual_alias_maps" and s["table"]]
    assert virtual[0]["key"] == "ceo@abc.com.tw" and virtual[0]["value"] == "andy"
