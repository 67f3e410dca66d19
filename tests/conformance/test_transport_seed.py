"""Every routing example of the seed lecture (../shared/seed/postfix-lecture-slides.txt),
resolved as Postfix's trivial-rewrite and qmgr would. Each test names its slide.

The slides are OCR text; where a line is garbled, the test uses the closest sensible reading
and says so.
"""

from __future__ import annotations

from pathlib import Path

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.config import from_mapping
from mailcore.model import Route
from mailcore.rewrite import AddressResolver, NextHop, Rewriter
from mailcore.tables import TableSet

MASTER = """\
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
"""
# Slide "Postfix Configuration - master.cf (1)": the maildrop pipe service ("—-d" is OCR for
# "-d").
MAILDROP = """\
maildrop  unix  -       n       n       -       -       pipe
  flags=DRhu user=vmail argv=/usr/local/bin/maildrop -d ${recipient}
"""
# Slide "Mail Relaying — Transport Maps (1)" ("mailgate.csie.nctu.edu.tw]|": the "|" is OCR).
TRANSPORT_1 = """\
csie.nctu.edu.tw smtp:[mailgate.csie.nctu.edu.tw]
cs.nctu.edu.tw smtp:[csmailgate.cs.nctu.edu.tw]
cis.nctu.edu.tw smtp:[mail.cis.nctu.edu.tw]
example.com smtp:[192.168.23.56]:20025
orillynet.com smtp
ora.com maildrop
kdent@ora.com error:no mail accepted for kdent
"""
SITE = {
    "myhostname": "csmx1.cs.nctu.edu.tw",
    "mydomain": "cs.nctu.edu.tw",
    "myorigin": "$mydomain",
    "mydestination": "$myhostname, localhost.$mydomain",
    "inet_interfaces": "127.0.0.1",
}


def make(tmp_path: Path, transport: str, master: str = MASTER,
         **settings: str) -> AddressResolver:
    (tmp_path / "transport").write_text(transport)
    config = from_mapping({**SITE, "transport_maps": "texthash:transport", **settings},
                          config_dir=tmp_path, master_cf=master)
    tables = TableSet(base_dir=tmp_path)
    classifier = DomainClassifier(config, tables)
    return AddressResolver(config, tables, classifier, Rewriter(config, tables, classifier))


async def test_transport_maps_1_bracketed_hosts(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Transport Maps (1)": domain → smtp:[host] (no MX lookup)."""
    r = make(tmp_path, TRANSPORT_1, master=MASTER + MAILDROP)
    for domain, host in (("csie.nctu.edu.tw", "mailgate.csie.nctu.edu.tw"),
                         ("cs.nctu.edu.tw", "csmailgate.cs.nctu.edu.tw"),
                         ("cis.nctu.edu.tw", "mail.cis.nctu.edu.tw")):
        res = await r.resolve(f"chwong@{domain}")
        assert res.route == Route("smtp", f"[{host}]", f"chwong@{domain}")
        assert res.no_mx and res.destinations == (NextHop(host, None, mx=False),)
    # A subdomain does not match "cs.nctu.edu.tw" (only ".cs.nctu.edu.tw" would).
    assert (await r.resolve("a@bsd.cs.nctu.edu.tw")).route == Route(
        "smtp", "bsd.cs.nctu.edu.tw", "a@bsd.cs.nctu.edu.tw")


async def test_transport_maps_1_address_and_port(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Transport Maps (1)": example.com smtp:[192.168.23.56]:20025."""
    r = make(tmp_path, TRANSPORT_1, master=MASTER + MAILDROP)
    res = await r.resolve("user@example.com")
    assert res.route == Route("smtp", "[192.168.23.56]:20025", "user@example.com")
    assert res.destinations == (NextHop("192.168.23.56", "20025", mx=False),)


async def test_transport_maps_1_transport_without_nexthop(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Transport Maps (1)": "orillynet.com smtp" — the recipient
    domain is the nexthop (MX lookup), even when relayhost is set (transport(5))."""
    r = make(tmp_path, TRANSPORT_1, master=MASTER + MAILDROP, relayhost="[csmailer.test]")
    res = await r.resolve("tim@orillynet.com")
    assert res.route == Route("smtp", "orillynet.com", "tim@orillynet.com")
    assert res.source == "transport_maps" and not res.no_mx


async def test_transport_maps_1_maildrop_pipe(tmp_path: Path) -> None:
    """Slides "Mail Relaying — Transport Maps (1)" (ora.com maildrop) and "Postfix
    Configuration - master.cf (1)" (the maildrop pipe service)."""
    r = make(tmp_path, TRANSPORT_1, master=MASTER + MAILDROP)
    res = await r.resolve("tim@ora.com")
    assert res.route == Route("maildrop", "ora.com", "tim@ora.com")
    assert not res.transport_unavailable and res.destinations == ()
    # Without the master.cf entry qmgr would defer: "mail transport unavailable".
    r = make(tmp_path, TRANSPORT_1)
    assert (await r.resolve("tim@ora.com")).transport_unavailable


async def test_transport_maps_1_error_for_one_address(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Transport Maps (1)": kdent@ora.com error:no mail accepted for
    kdent — the full address wins over the domain entry."""
    r = make(tmp_path, TRANSPORT_1, master=MASTER + MAILDROP)
    res = await r.resolve("kdent@ora.com")
    assert res.route == Route("error", "no mail accepted for kdent", "kdent@ora.com")
    assert res.transport_match is not None and res.transport_match.key == "kdent@ora.com"


async def test_transport_maps_2_ondemand_deferred(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Transport Maps (2)": abc.com ondemand, master.cf "ondemand
    unix - - n - - smtp" ("wunix" is OCR for "unix"), defer_transports = ondemand."""
    master = MASTER + "ondemand  unix  -       -       n       -       -       smtp\n"
    r = make(tmp_path, "abc.com ondemand\n", master=master, defer_transports="ondemand")
    res = await r.resolve("customer@abc.com")
    assert res.route == Route("ondemand", "abc.com", "customer@abc.com")
    assert res.deferred_transport and not res.transport_unavailable
    assert res.destinations == (NextHop("abc.com"),)  # MX lookup once flushed
    assert not (await r.resolve("x@other.com")).deferred_transport


async def test_inbound_mail_gateway(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Inbound Mail Gateway (2)": on csmx1, relay_domains =
    secureLab.cs.nctu.edu.tw javaLab.cs.nctu.edu.tw with transport entries
    relay:[secureLab...] ("securelLab"/"javalLab" are OCR for secureLab/javaLab)."""
    transport = ("secureLab.cs.nctu.edu.tw relay:[secureLab.cs.nctu.edu.tw]\n"
                 "javaLab.cs.nctu.edu.tw relay:[javaLab.cs.nctu.edu.tw]\n")
    r = make(tmp_path, transport,
             relay_domains="secureLab.cs.nctu.edu.tw javaLab.cs.nctu.edu.tw")
    for lab in ("secureLab", "javaLab"):
        res = await r.resolve(f"student@{lab.lower()}.cs.nctu.edu.tw")
        assert res.address_class is AddressClass.RELAY
        assert res.route == Route("relay", f"[{lab}.cs.nctu.edu.tw]",
                                  f"student@{lab.lower()}.cs.nctu.edu.tw")
        assert res.no_mx
    # Without the transport entry, relay_domains alone relays by MX to the domain.
    r = make(tmp_path, "", relay_domains="secureLab.cs.nctu.edu.tw")
    assert (await r.resolve("s@securelab.cs.nctu.edu.tw")).route == Route(
        "relay", "securelab.cs.nctu.edu.tw", "s@securelab.cs.nctu.edu.tw")


async def test_outbound_mail_gateway(tmp_path: Path) -> None:
    """Slide "Mail Relaying — Outbound Mail Gateway": on secureLab, mydestination =
    secureLab.cs.nctu.edu.tw and relayhost = [csmailer.cs.nctu.edu.tw]: remote mail goes
    to csmailer without an MX lookup; local mail stays local."""
    r = make(tmp_path, "", myhostname="secureLab.cs.nctu.edu.tw",
             mydestination="secureLab.cs.nctu.edu.tw",
             relayhost="[csmailer.cs.nctu.edu.tw]")
    res = await r.resolve("friend@gmail.com")
    assert res.route == Route("smtp", "[csmailer.cs.nctu.edu.tw]", "friend@gmail.com")
    assert res.nexthop_source == "relayhost" and res.no_mx
    local = await r.resolve("student@securelab.cs.nctu.edu.tw")
    assert local.route.transport == "local" and local.address_class is AddressClass.LOCAL
