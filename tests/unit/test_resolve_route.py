"""`mailcore route` with the resolver: transport and nexthop at the end, --json fields, --mx.

The --mx tests talk to tests/support/dnsserver.py on 127.0.0.1 (through dns_nameservers),
never to the system resolver.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from support.dnsserver import DnsServer

from mailcore.cli_route import add_route_parser, explain_route, format_report, run_route
from mailcore.config import load_config
from mailcore.dns import Resolver
from mailcore.tables import TableSet

MAIN_CF = """\
myhostname = mx.example.org
mydomain = example.org
mydestination = $myhostname, $mydomain
inet_interfaces = 127.0.0.1
recipient_delimiter = +
transport_maps = texthash:transport
virtual_alias_maps = texthash:virtual
relocated_maps = texthash:relocated
"""
MASTER_CF = """\
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
error     unix  -       -       n       -       -       error
"""
TRANSPORT = """\
gated.test      smtp:[gw.gated.test]:2525
mx.test         smtp
nullmx.test     smtp
broken.test     smtp
odd.test        nosuch
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(MAIN_CF + "dns_nameservers = 127.0.0.1:9\n")
    (tmp_path / "master.cf").write_text(MASTER_CF)
    (tmp_path / "transport").write_text(TRANSPORT)
    (tmp_path / "virtual").write_text("team@example.org ann@mx.test, bob@gated.test\n")
    (tmp_path / "relocated").write_text("old@example.org old@new.test\n")
    return tmp_path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_route_parser(sub)
    return parser.parse_args(["route", *argv])


async def test_report_ends_with_transport_and_nexthop(confdir: Path) -> None:
    report = await explain_route(load_config(confdir), TableSet(base_dir=confdir),
                                 "bob+x@gated.test")
    text = format_report(report)
    assert text.splitlines()[-2:] == ["transport: smtp", "nexthop: [gw.gated.test]:2525"]
    assert "transport_maps keys tried: bob+x@gated.test, bob@gated.test, gated.test" in text
    assert "matched: texthash:transport: gated.test -> smtp:[gw.gated.test]:2525" in text
    assert "address class default" in text and "no MX lookup" in text


async def test_each_expanded_recipient_is_routed(confdir: Path) -> None:
    report = await explain_route(load_config(confdir), TableSet(base_dir=confdir),
                                 "team@example.org")
    routes = [(r.route.recipient, r.route.transport, r.route.nexthop)
              for r in report.resolutions]
    assert routes == [("ann@mx.test", "smtp", "mx.test"),
                      ("bob@gated.test", "smtp", "[gw.gated.test]:2525")]


async def test_relocated_and_unknown_transport_are_explained(confdir: Path) -> None:
    tables = TableSet(base_dir=confdir)
    report = await explain_route(load_config(confdir), tables, "old@example.org")
    assert report.relocated == (("old@example.org", "old@new.test"),)
    assert format_report(report).splitlines()[-2:] == [
        "transport: error", "nexthop: 5.1.6 User has moved to old@new.test"]
    report = await explain_route(load_config(confdir), tables, "a@odd.test")
    text = format_report(report)
    assert "no delivery service 'nosuch'" in text and "mail transport unavailable" in text
    assert text.endswith("transport: nosuch\nnexthop: odd.test")


def test_run_route_json_fields(confdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_route(parse("bob@gated.test", "--json"), lambda: load_config(confdir)) == 0
    data = json.loads(capsys.readouterr().out)
    (route,) = data["routes"]
    assert (route["transport"], route["nexthop"], route["recipient"]) == (
        "smtp", "[gw.gated.test]:2525", "bob@gated.test")
    assert route["address_class"] == "default" and route["no_mx"] is True
    assert route["transport_match"] == {"table": "texthash:transport", "key": "gated.test",
                                        "value": "smtp:[gw.gated.test]:2525"}
    assert route["destinations"] == [{"host": "gw.gated.test", "port": "2525", "mx": False,
                                      "unix": False}]
    assert "mx" not in route


def test_run_route_mx_skips_bracketed_nexthop(confdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # dns_nameservers points at a dead port: a query would report "temporary", not skip.
    assert run_route(parse("bob@gated.test", "--mx"), lambda: load_config(confdir)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == ["transport: smtp", "nexthop: [gw.gated.test]:2525",
                        "mx gw.gated.test: none ([gw.gated.test] suppresses MX lookups)"]


async def test_mx_hosts_through_dns_nameservers(confdir: Path) -> None:
    records = {"mx.test": {"MX": ["20 mx2.mx.test", "10 mx1.mx.test"]},
               "nullmx.test": {"MX": ["0 ."]}}
    async with DnsServer(records, servfail=["broken.test"]) as dns:
        main = MAIN_CF + f"dns_nameservers = {dns.nameserver}\ndns_timeout = 2s\n"
        (confdir / "main.cf").write_text(main)
        config = load_config(confdir)
        tables = TableSet(base_dir=confdir)
        resolver = Resolver.from_config(config)

        async def lines(address: str) -> list[str]:
            report = await explain_route(config, tables, address, dns=resolver)
            return format_report(report).splitlines()

        assert (await lines("ann@mx.test"))[-4:] == [
            "transport: smtp", "nexthop: mx.test",
            "mx mx.test: 10 mx1.mx.test", "mx mx.test: 20 mx2.mx.test"]
        assert (await lines("x@nullmx.test"))[-1] == (
            "mx nullmx.test: 0 .  (null MX: the domain accepts no mail)")
        assert (await lines("x@broken.test"))[-1].startswith("mx broken.test: temporary (")
        assert (await lines("x@nowhere.test"))[-1].startswith("mx nowhere.test: not_found (")
        assert (await lines("joe@example.org"))[-1] == (
            "mx mx.example.org: none (transport local does not look up MX records)")
        report = await explain_route(config, tables, "ann@mx.test", dns=resolver)
        data = report.as_dict()["routes"][0]["mx"]
        assert data == [{"domain": "mx.test", "status": "found", "detail": "",
                         "hosts": [{"preference": 10, "host": "mx1.mx.test"},
                                   {"preference": 20, "host": "mx2.mx.test"}]}]
        assert ("nowhere.test.", "MX") in dns.queries
