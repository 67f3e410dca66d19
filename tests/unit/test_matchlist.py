"""Postfix match lists: DomainList and AddressList."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.errors import TableError
from mailcore.tables import AddressList, DomainList, TableSet


async def test_domain_list_names_negation_and_parents() -> None:
    ts = TableSet()
    plain = DomainList(["example.com, !bad.example.org .example.org"], ts, match_subdomains=False)
    assert await plain.matches("EXAMPLE.com")
    assert not await plain.matches("sub.example.com")
    assert await plain.matches("a.example.org")
    assert not await plain.matches("bad.example.org")
    assert not await plain.matches("example.org")
    parent = DomainList(["example.com"], ts, match_subdomains=True)
    assert await parent.matches("deep.sub.example.com")
    assert not await parent.matches("badexample.com")


async def test_domain_list_file_and_table(tmp_path: Path) -> None:
    f = tmp_path / "domains"
    f.write_text("# relay domains\nfoo.org, bar.org\n!no.baz.org\nbaz.org\n")
    tbl = tmp_path / "relay"
    tbl.write_text("tabled.net OK\n.sub.net OK\n")
    ts = TableSet()
    dl = DomainList([str(f), f"texthash:{tbl}"], ts, match_subdomains=True)
    assert await dl.matches("bar.org")
    assert await dl.matches("x.baz.org")
    assert not await dl.matches("no.baz.org")
    assert await dl.matches("tabled.net")
    assert await dl.matches("www.tabled.net")  # table parent lookup with match_subdomains
    strict = DomainList([f"texthash:{tbl}"], ts, match_subdomains=False)
    assert not await strict.matches("www.tabled.net")
    assert await strict.matches("a.sub.net")  # ".sub.net" entry
    negated = DomainList(["!" + str(f), "baz.org"], ts, match_subdomains=False)
    assert not await negated.matches("baz.org")  # "!/file" negates every item in the file


async def test_mynetworks_seed_file_and_cidr(tmp_path: Path) -> None:
    f = tmp_path / "mynetworks"
    f.write_text("127.0.0.0/8\n140.113.0.0/16\n10.113.0.0/16\n")
    ts = TableSet()
    for items in ([str(f)], [f"cidr:{tmp_path / 'mynetworks.cidr'}"]):
        (tmp_path / "mynetworks.cidr").write_text(
            "127.0.0.0/8 OK\n140.113.0.0/16 OK\n10.113.0.0/16 OK\n")
        nets = AddressList(items, ts, match_subdomains=True)
        assert await nets.matches("127.0.0.1")
        assert await nets.matches("140.113.17.5")
        assert await nets.matches("10.113.255.1")
        assert not await nets.matches("10.114.0.1")
        assert not await nets.matches("192.168.1.1")
    assert await ts.open("static:1003").get("whatever") == "1003"


async def test_address_list_ipv6_negation_and_hostnames() -> None:
    ts = TableSet()
    al = AddressList(["!192.168.1.13, 192.168.0.0/16, [::1]/128, [2001:db8::]/32,"
                      " .trusted.org, 10.0.0.1"], ts, match_subdomains=False)
    assert not await al.matches("192.168.1.13")
    assert await al.matches("192.168.1.14")
    assert await al.matches("::1")
    assert await al.matches("[2001:db8::5]")
    assert await al.matches("::ffff:192.168.4.4")  # IPv4-mapped
    assert await al.matches("10.0.0.1")
    assert not await al.matches("10.0.0.2")
    assert await al.matches("203.0.113.9", "host.trusted.org")
    assert not await al.matches("203.0.113.9", "host.other.org")


def test_list_file_errors_name_line(tmp_path: Path) -> None:
    f = tmp_path / "nets"
    f.write_text("127.0.0.0/8\n\n10.0.0.0/33\n")
    with pytest.raises(TableError) as err:
        AddressList([str(f)], TableSet(), match_subdomains=False)
    assert err.value.file == str(f) and err.value.line == 3
    f.write_text("127.0.0.1/8\n")
    with pytest.raises(TableError, match="line 1: non-null host address bits"):
        AddressList([str(f)], TableSet(), match_subdomains=False)
    with pytest.raises(TableError, match="unsupported dictionary type: nis"):
        DomainList(["nis:mail.aliases"], TableSet(), match_subdomains=False)
