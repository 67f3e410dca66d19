"""Postfix key-search orders: mail_addr_find style, check_*_access, transport domains."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.tables import Match, TableSet, lookup_access, lookup_address, lookup_domain
from mailcore.tables.search import split_extension


class Recorder:
    """A fixed table that records the keys it was asked."""

    def __init__(self, entries: dict[str, str], *, pattern: bool = False, spec: str = "rec:x"):
        self.spec = spec
        self.is_pattern = pattern
        self.entries = entries
        self.asked: list[str] = []

    async def get(self, key: str) -> str | None:
        self.asked.append(key)
        return self.entries.get(key.lower())


def test_split_extension() -> None:
    assert split_extension("user+foo", "+") == ("user", "+foo")
    assert split_extension("user-foo+bar", "+-") == ("user", "-foo+bar")
    assert split_extension("+foo", "+") is None
    assert split_extension("owner-list", "-") is None
    assert split_extension("list-request", "-") is None
    assert split_extension("user", "") is None


async def test_address_order_local_domain() -> None:
    rec = Recorder({})
    got = await lookup_address([rec], "User+Ext@Example.com", delimiter="+",
                               is_local_domain=lambda d: d.lower() == "example.com")
    assert got is None
    assert rec.asked == ["User+Ext@Example.com", "User@Example.com", "User+Ext", "User",
                         "@Example.com"]


async def test_address_order_remote_domain_and_pattern_table() -> None:
    rec = Recorder({})
    pat = Recorder({}, pattern=True)
    await lookup_address([rec, pat], "user+ext@remote.org", delimiter="+")
    assert rec.asked == ["user+ext@remote.org", "user@remote.org", "@remote.org"]
    assert pat.asked == ["user+ext@remote.org"]


async def test_address_search_is_key_major() -> None:
    first = Recorder({"@example.com": "catchall"}, spec="t:first")
    second = Recorder({"bob@example.com": "bob-specific"}, spec="t:second")
    got = await lookup_address([first, second], "bob@example.com")
    assert got == Match("t:second", "bob@example.com", "bob-specific")


async def test_virtual_seed(tmp_path: Path) -> None:
    src = tmp_path / "virtual"
    src.write_text("chwong@csie.nctu.edu.tw @chbsd.cs.nctu.edu.tw\n"
                   "chwong ch0nsi@gmail.com\n"
                   "@csie.nctu.edu.tw @cs.nctu.edu.tw\n")
    t = TableSet().open(f"texthash:{src}")
    local = {"cs.nctu.edu.tw"}.__contains__
    got = await lookup_address([t], "chwong@csie.nctu.edu.tw", is_local_domain=local)
    assert got == Match(t.spec, "chwong@csie.nctu.edu.tw", "@chbsd.cs.nctu.edu.tw")
    got = await lookup_address([t], "alice@csie.nctu.edu.tw", is_local_domain=local)
    assert got is not None and got.key == "@csie.nctu.edu.tw" and got.value == "@cs.nctu.edu.tw"
    got = await lookup_address([t], "chwong@cs.nctu.edu.tw", is_local_domain=local)
    assert got is not None and got.key == "chwong" and got.value == "ch0nsi@gmail.com"
    assert await lookup_address([t], "chwong@elsewhere.org", is_local_domain=local) is None


async def test_relocated_seed(tmp_path: Path) -> None:
    src = tmp_path / "relocated"
    src.write_text("andy@nasa.cs.nctu.edu.tw andyliu@abc.com\n"
                   "liuyh EC319, NCTU, ROC\n"
                   "@nabsd.cs.nctu.edu.tw zfs.cs.nctu.edu.tw\n")
    t = TableSet().open(f"texthash:{src}")
    local = {"nasa.cs.nctu.edu.tw"}.__contains__
    hit = await lookup_address([t], "andy@nasa.cs.nctu.edu.tw", is_local_domain=local)
    assert hit is not None and hit.value == "andyliu@abc.com"
    hit = await lookup_address([t], "liuyh@nasa.cs.nctu.edu.tw", is_local_domain=local)
    assert hit is not None and hit.value == "EC319, NCTU, ROC"
    hit = await lookup_address([t], "anyone@nabsd.cs.nctu.edu.tw", is_local_domain=local)
    assert hit is not None and hit.value == "zfs.cs.nctu.edu.tw"
    assert await lookup_address([t], "liuyh@remote.org", is_local_domain=local) is None


@pytest.mark.parametrize(
    ("subdomains", "expected"),
    [
        (False, ["u+x@a.b.example.com", "u@a.b.example.com", "a.b.example.com",
                 ".b.example.com", ".example.com", ".com", "u+x@", "u@"]),
        (True, ["u+x@a.b.example.com", "u@a.b.example.com", "a.b.example.com",
                "b.example.com", "example.com", "com", "u+x@", "u@"]),
    ],
)
async def test_access_address_order(subdomains: bool, expected: list[str]) -> None:
    rec = Recorder({})
    pat = Recorder({}, pattern=True)
    await lookup_access([rec, pat], "address", "u+x@a.b.example.com",
                        match_subdomains=subdomains, delimiter="+")
    assert rec.asked == expected
    assert pat.asked == ["u+x@a.b.example.com"]


async def test_access_hostname_and_ip_orders() -> None:
    rec = Recorder({})
    await lookup_access([rec], "hostname", "mx.mail.example.com", match_subdomains=False)
    assert rec.asked == ["mx.mail.example.com", ".mail.example.com", ".example.com", ".com"]
    rec = Recorder({})
    await lookup_access([rec], "ipaddr", "192.168.23.56", match_subdomains=False)
    assert rec.asked == ["192.168.23.56", "192.168.23", "192.168", "192"]
    rec = Recorder({})
    await lookup_access([rec], "ipaddr", "2001:db8::1", match_subdomains=False)
    assert rec.asked == ["2001:db8::1", "2001:db8:", "2001:db8", "2001"]


async def test_access_hit_reports_key() -> None:
    rec = Recorder({"example.com": "REJECT", "192.168": "OK"})
    got = await lookup_access([rec], "hostname", "a.example.com", match_subdomains=True)
    assert got == Match("rec:x", "example.com", "REJECT")
    assert await lookup_access([rec], "hostname", "a.example.com", match_subdomains=False) is None
    got = await lookup_access([rec], "ipaddr", "192.168.1.2", match_subdomains=False)
    assert got is not None and got.key == "192.168"


async def test_transport_seed_domain_lookup(tmp_path: Path) -> None:
    src = tmp_path / "transport"
    src.write_text("csie.nctu.edu.tw smtp:[mailgate.csie.nctu.edu.tw]\n"
                   ".nctu.edu.tw smtp:[relay.nctu.edu.tw]\n"
                   "example.com smtp:[192.168.23.56]:20025\n"
                   "orillynet.com smtp\nora.com maildrop\n"
                   "kdent@ora.com error:no mail accepted for kdent\n")
    t = TableSet().open(f"texthash:{src}")
    hit = await lookup_domain([t], "csie.nctu.edu.tw", match_subdomains=False)
    assert hit is not None and hit.value == "smtp:[mailgate.csie.nctu.edu.tw]"
    hit = await lookup_domain([t], "cs.nctu.edu.tw", match_subdomains=False)
    assert hit is not None and hit.key == ".nctu.edu.tw"
    assert await lookup_domain([t], "sub.example.com", match_subdomains=False) is None
    hit = await lookup_domain([t], "sub.example.com", match_subdomains=True)
    assert hit is not None and hit.value == "smtp:[192.168.23.56]:20025"
    hit = await lookup_domain([t], "ora.com", match_subdomains=False, address="kdent@ora.com")
    assert hit is not None and hit.value == "error:no mail accepted for kdent"
    hit = await lookup_domain([t], "ora.com", match_subdomains=False, address="tim@ora.com")
    assert hit is not None and hit.value == "maildrop"
