"""AddressResolver: address classes, transport_maps order and field rules, relayhost and the
sender-dependent maps, content_filter, unknown transports (Postfix resolve.c, transport.c,
qmgr_message.c; transport(5), postconf(5))."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.config import from_mapping
from mailcore.errors import ConfigError
from mailcore.model import Route
from mailcore.rewrite import AddressResolver, NextHop, Rewriter, parse_nexthop
from mailcore.tables import TableSet

MASTER = """\
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
"""
SITE = {
    "myhostname": "mx.example.org",
    "mydomain": "example.org",
    "mydestination": "$myhostname, localhost.$mydomain, $mydomain",
    "inet_interfaces": "127.0.0.1",
    "recipient_delimiter": "+",
}


def make(tmp_path: Path, files: dict[str, str] | None = None, master: str = MASTER,
         **settings: str) -> AddressResolver:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    config = from_mapping({**SITE, **settings}, config_dir=tmp_path, master_cf=master)
    tables = TableSet(base_dir=tmp_path)
    classifier = DomainClassifier(config, tables)
    return AddressResolver(config, tables, classifier, Rewriter(config, tables, classifier))


async def route(resolver: AddressResolver, address: str, sender: str = "") -> Route:
    return (await resolver.resolve(address, sender=sender)).route


# ------------------------------------------------------------------ class defaults
async def test_local_class_uses_local_transport_and_its_nexthop(tmp_path: Path) -> None:
    r = make(tmp_path)
    res = await r.resolve("joe@example.org")
    assert res.address_class is AddressClass.LOCAL
    # local_transport = local:$myhostname: the nexthop comes from the parameter.
    assert res.route == Route("local", "mx.example.org", "joe@example.org")
    assert res.nexthop_source == "local_transport"
    assert await route(r, "joe") == Route("local", "mx.example.org", "joe@mx.example.org")
    assert await route(r, "joe@[127.0.0.1]") == Route("local", "mx.example.org",
                                                       "joe@[127.0.0.1]")


async def test_local_transport_without_nexthop_uses_recipient_domain(tmp_path: Path) -> None:
    r = make(tmp_path, local_transport="local")
    assert await route(r, "joe@example.org") == Route("local", "example.org", "joe@example.org")


async def test_virtual_alias_domain_is_user_unknown_even_with_transport_maps(
        tmp_path: Path) -> None:
    r = make(tmp_path, {"transport": "* smtp:[elsewhere]\n"}, virtual_alias_domains="va.test",
             transport_maps="texthash:transport")
    res = await r.resolve("nobody@va.test")
    assert res.address_class is AddressClass.VIRTUAL_ALIAS
    assert res.route == Route("error", "5.1.1 User unknown in virtual alias table",
                              "nobody@va.test")
    assert res.transport_keys == ()
    r2 = make(tmp_path, virtual_alias_domains="va.test", show_user_unknown_table_name="no")
    assert (await route(r2, "nobody@va.test")).nexthop == "5.1.1 User unknown"


async def test_virtual_mailbox_class(tmp_path: Path) -> None:
    r = make(tmp_path, virtual_mailbox_domains="vm.test")
    res = await r.resolve("joe@vm.test")
    assert res.address_class is AddressClass.VIRTUAL_MAILBOX
    assert res.route == Route("virtual", "vm.test", "joe@vm.test")
    r = make(tmp_path, virtual_mailbox_domains="vm.test", virtual_transport="lmtp:unix:/run/l")
    res = await r.resolve("joe@vm.test")
    assert res.route == Route("lmtp", "unix:/run/l", "joe@vm.test")
    assert res.destinations == (NextHop("/run/l", None, mx=False, unix=True),)


async def test_relay_class_nexthop_domain_then_relayhost(tmp_path: Path) -> None:
    r = make(tmp_path, relay_domains="relayed.test")
    res = await r.resolve("joe@sub.relayed.test")
    assert res.address_class is AddressClass.RELAY
    assert res.route == Route("relay", "sub.relayed.test", "joe@sub.relayed.test")
    assert res.fallback_relay == ()
    # relayhost applies to the relay class too (resolve.c: all off-host classes).
    r = make(tmp_path, relay_domains="relayed.test", relayhost="gw.example.org:2525")
    assert await route(r, "joe@relayed.test") == Route("relay", "gw.example.org:2525",
                                                       "joe@relayed.test")
    # relay_transport's own nexthop beats relayhost.
    r = make(tmp_path, relay_domains="relayed.test", relayhost="gw.example.org",
             relay_transport="relay:[inside.example.org]")
    assert await route(r, "joe@relayed.test") == Route("relay", "[inside.example.org]",
                                                       "joe@relayed.test")


async def test_default_class_with_and_without_relayhost(tmp_path: Path) -> None:
    r = make(tmp_path)
    res = await r.resolve("joe@far.test")
    assert res.address_class is AddressClass.DEFAULT
    assert res.route == Route("smtp", "far.test", "joe@far.test")
    assert res.destinations == (NextHop("far.test"),) and not res.no_mx
    r = make(tmp_path, relayhost="[gw.example.org]:587")
    res = await r.resolve("joe@far.test")
    assert res.route.nexthop == "[gw.example.org]:587" and res.nexthop_source == "relayhost"
    assert res.no_mx and res.destinations == (NextHop("gw.example.org", "587", mx=False),)
    r = make(tmp_path, relayhost="gw.example.org")
    res = await r.resolve("joe@far.test")
    assert res.route.nexthop == "gw.example.org" and not res.no_mx
    r = make(tmp_path, relayhost="gw.example.org", default_transport="smtp:[other]:26")
    assert await route(r, "joe@far.test") == Route("smtp", "[other]:26", "joe@far.test")


async def test_null_transport_is_a_config_error(tmp_path: Path) -> None:
    r = make(tmp_path, default_transport="")
    with pytest.raises(ConfigError, match="default_transport: null transport"):
        await r.resolve("joe@far.test")


async def test_percent_hack_and_bang_paths_resolve_through_unroute(tmp_path: Path) -> None:
    r = make(tmp_path)
    res = await r.resolve("joe%far.test@example.org")
    assert res.route == Route("smtp", "far.test", "joe@far.test")
    r = make(tmp_path, allow_percent_hack="no")
    res = await r.resolve("joe%far.test@example.org")
    assert res.route == Route("local", "mx.example.org", "joe%far.test@example.org")
    assert res.routed
    r = make(tmp_path, swap_bangpath="yes")
    assert await route(r, "far.test!joe@example.org") == Route("smtp", "far.test",
                                                               "joe@far.test")
    # Routing for a remote destination is left alone (restrictions refuse such relaying).
    res = await r.resolve("joe%other.test@far.test")
    assert res.route == Route("smtp", "far.test", "joe%other.test@far.test") and res.routed


async def test_bad_domains_and_leading_dash(tmp_path: Path) -> None:
    r = make(tmp_path)
    res = await r.resolve("joe@192.0.2.1")
    assert res.syntax_error and res.route.transport == "error"
    assert res.route.nexthop == "5.1.3 bad address syntax"
    r = make(tmp_path, resolve_numeric_domain="yes")
    assert await route(r, "joe@192.0.2.1") == Route("smtp", "[192.0.2.1]", "joe@[192.0.2.1]")
    assert await route(r, "joe@127.0.0.1") == Route("local", "mx.example.org",
                                                    "joe@[127.0.0.1]")
    assert (await route(r, "-joe@example.org")).nexthop == "5.1.3 bad address syntax"
    r = make(tmp_path, allow_min_user="yes")
    assert await route(r, "-joe@example.org") == Route("local", "mx.example.org",
                                                       "-joe@example.org")


# ------------------------------------------------------------------ transport_maps
TRANSPORT = """\
joe+list@far.test    smtp:[list-host]
joe@far.test         smtp:[joe-host]
far.test             smtp:[domain-host]
.far.test            smtp:[sub-host]
.test                smtp:[tld-host]
*                    smtp:[wild-host]
"""


async def test_transport_maps_key_order(tmp_path: Path) -> None:
    r = make(tmp_path, {"transport": TRANSPORT}, transport_maps="texthash:transport")
    expect = {
        "joe+list@far.test": "[list-host]",
        "joe+other@far.test": "[joe-host]",
        "ann@far.test": "[domain-host]",
        "ann@a.b.far.test": "[sub-host]",
        "ann@else.test": "[tld-host]",
        "ann@else.org": "[wild-host]",
    }
    for address, nexthop in expect.items():
        assert (await route(r, address)).nexthop == nexthop, address
    res = await r.resolve("ann@a.b.far.test")
    assert res.transport_keys == ("ann@a.b.far.test", "a.b.far.test", ".b.far.test",
                                  ".far.test")
    assert res.transport_match is not None and res.transport_match.key == ".far.test"
    res = await r.resolve("ann+x@else.org")
    assert res.transport_keys == ("ann+x@else.org", "ann@else.org", "else.org", ".org", "*")


async def test_parent_domain_style_for_transport_maps(tmp_path: Path) -> None:
    table = "far.test smtp:[parent]\n"
    r = make(tmp_path, {"transport": table}, transport_maps="texthash:transport")
    assert (await route(r, "a@sub.far.test")).nexthop == "sub.far.test"
    r = make(tmp_path, {"transport": table}, transport_maps="texthash:transport",
             parent_domain_matches_subdomains="transport_maps")
    res = await r.resolve("a@sub.far.test")
    assert res.route.nexthop == "[parent]"
    assert res.transport_keys == ("a@sub.far.test", "sub.far.test", "far.test")


async def test_regexp_tables_see_only_full_address_and_wildcard(tmp_path: Path) -> None:
    r = make(tmp_path, {"re": "/^far\\.test$/ smtp:[domain-only]\n/^\\*$/ smtp:[star]\n"},
             transport_maps="regexp:re")
    # far.test is a partial key: regexp tables never see it; "*" is a full key.
    assert (await route(r, "a@far.test")).nexthop == "[star]"


async def test_empty_fields_inherit(tmp_path: Path) -> None:
    table = """\
keep.test       :
hop.test        :[newhop]:2525
chan.test       relay
chan2.test      relay:
err.test        error
"""
    r = make(tmp_path, {"transport": table}, transport_maps="texthash:transport",
             relayhost="[gw.example.org]")
    # ":" keeps the class transport and the class nexthop (relayhost here).
    res = await r.resolve("a@keep.test")
    assert res.route == Route("smtp", "[gw.example.org]", "a@keep.test")
    assert res.source == "default_transport" and res.nexthop_source == "relayhost"
    assert await route(r, "a@hop.test") == Route("smtp", "[newhop]:2525", "a@hop.test")
    # A transport without nexthop resets the nexthop to the recipient domain, not relayhost.
    assert await route(r, "a@chan.test") == Route("relay", "chan.test", "a@chan.test")
    assert await route(r, "a@chan2.test") == Route("relay", "chan2.test", "a@chan2.test")
    assert await route(r, "a@err.test") == Route("error", "Address is undeliverable",
                                                 "a@err.test")
    # Local class: ":" keeps local:$myhostname's nexthop.
    r = make(tmp_path, {"t2": "example.org :\n"}, transport_maps="texthash:t2")
    assert await route(r, "a@example.org") == Route("local", "mx.example.org", "a@example.org")


async def test_every_result_form(tmp_path: Path) -> None:
    table = """\
a@forms.test    smtp:[mx.forms.test]:2525
b@forms.test    smtp:mx.forms.test
c@forms.test    smtp:mx.forms.test:2525
d@forms.test    lmtp:unix:/var/run/lmtp
e@forms.test    lmtp:inet:127.0.0.1:24
f@forms.test    error:5.7.1 go away
g@forms.test    discard:silently
h@forms.test    retry:4.3.5 try later
i@forms.test    relay:
j@forms.test    local:
k@forms.test    smtp:[a.forms.test], b.forms.test:26
"""
    r = make(tmp_path, {"transport": table}, transport_maps="texthash:transport")
    cases = {
        "a": (Route("smtp", "[mx.forms.test]:2525", "a@forms.test"),
              (NextHop("mx.forms.test", "2525", mx=False),)),
        "b": (Route("smtp", "mx.forms.test", "b@forms.test"), (NextHop("mx.forms.test"),)),
        "c": (Route("smtp", "mx.forms.test:2525", "c@forms.test"),
              (NextHop("mx.forms.test", "2525"),)),
        "d": (Route("lmtp", "unix:/var/run/lmtp", "d@forms.test"),
              (NextHop("/var/run/lmtp", None, mx=False, unix=True),)),
        "e": (Route("lmtp", "inet:127.0.0.1:24", "e@forms.test"), (NextHop("127.0.0.1", "24"),)),
        "f": (Route("error", "5.7.1 go away", "f@forms.test"), ()),
        "g": (Route("discard", "silently", "g@forms.test"), ()),
        "h": (Route("retry", "4.3.5 try later", "h@forms.test"), ()),
        "i": (Route("relay", "forms.test", "i@forms.test"), (NextHop("forms.test"),)),
        "j": (Route("local", "forms.test", "j@forms.test"), ()),
        "k": (Route("smtp", "[a.forms.test], b.forms.test:26", "k@forms.test"),
              (NextHop("a.forms.test", None, mx=False), NextHop("b.forms.test", "26"))),
    }
    for user, (expected, hops) in cases.items():
        res = await r.resolve(f"{user}@forms.test")
        assert (res.route, res.destinations) == (expected, hops), user
        assert not res.transport_unavailable, user


def test_parse_nexthop_ipv6_and_service_names() -> None:
    assert parse_nexthop("[ipv6:2001:db8::1]:25") == (NextHop("ipv6:2001:db8::1", "25", False),)
    assert parse_nexthop("mx.test:smtp") == (NextHop("mx.test", "smtp"),)
    assert parse_nexthop(" ") == ()


# ------------------------------------------------------------------ sender-dependent
async def test_sender_dependent_relayhost_maps(tmp_path: Path) -> None:
    table = ("joe@example.org [joe-relay]:587\n@partner.test [partner-relay]\n"
             "<> [bounce-relay]\nann@example.org DUNNO\n")
    r = make(tmp_path, {"sdr": table}, sender_dependent_relayhost_maps="texthash:sdr",
             relayhost="[gw.example.org]", relay_domains="relayed.test")
    assert (await route(r, "x@far.test", "joe@example.org")).nexthop == "[joe-relay]:587"
    res = await r.resolve("x@far.test", sender="bob@partner.test")
    assert res.route.nexthop == "[partner-relay]"
    assert res.nexthop_source == "sender_dependent_relayhost_maps"
    assert res.sender_relay_match is not None and res.sender_relay_match.key == "@partner.test"
    assert (await route(r, "x@far.test", "")).nexthop == "[bounce-relay]"
    assert (await route(r, "x@relayed.test", "joe@example.org")).nexthop == "[joe-relay]:587"
    # DUNNO: the recipient domain, not relayhost (resolve.c).
    assert (await route(r, "x@far.test", "ann@example.org")).nexthop == "far.test"
    assert (await route(r, "x@far.test", "other@example.org")).nexthop == "[gw.example.org]"
    # Never for local or virtual mailbox mail.
    assert (await route(r, "x@example.org", "joe@example.org")).nexthop == "mx.example.org"


async def test_sender_dependent_default_transport_maps(tmp_path: Path) -> None:
    table = "joe@example.org relay:[joe-gw]\nann@example.org DUNNO\n@bulk.test lmtp\n"
    r = make(tmp_path, {"sdt": table}, sender_dependent_default_transport_maps="texthash:sdt",
             relay_domains="relayed.test")
    res = await r.resolve("x@far.test", sender="joe@example.org")
    assert res.route == Route("relay", "[joe-gw]", "x@far.test")
    assert res.source == "sender_dependent_default_transport_maps"
    assert await route(r, "x@far.test", "ann@example.org") == Route("smtp", "far.test",
                                                                    "x@far.test")
    assert await route(r, "x@far.test", "b@bulk.test") == Route("lmtp", "far.test", "x@far.test")
    # Only the default class: relay_domains keep relay_transport.
    assert await route(r, "x@relayed.test", "joe@example.org") == Route(
        "relay", "relayed.test", "x@relayed.test")


# ------------------------------------------------------------------ filter, master.cf, misc
async def test_content_filter_overrides_resolver(tmp_path: Path) -> None:
    r = make(tmp_path, {"transport": "* error:never\n"}, transport_maps="texthash:transport",
             master=MASTER + "scan unix - - n - 10 smtp\n")
    res = await r.resolve("joe%far.test@example.org", content_filter="scan:[127.0.0.1]:10025")
    assert res.route == Route("scan", "[127.0.0.1]:10025", "joe%far.test@example.org")
    assert res.address_class is None and res.source == "content_filter"
    assert res.destinations == (NextHop("127.0.0.1", "10025", mx=False),)
    res = await r.resolve("joe@far.test", content_filter="scan:")
    assert res.route == Route("scan", "mx.example.org", "joe@far.test")
    assert res.nexthop_source == "myhostname"
    assert (await r.resolve("joe@far.test", content_filter="")).route.transport == "error"


async def test_unknown_transport_is_reported_not_rewritten(tmp_path: Path) -> None:
    r = make(tmp_path, {"transport": "far.test nosuch:[h]\n"},
             transport_maps="texthash:transport")
    res = await r.resolve("a@far.test")
    # qmgr defers such mail with 4.3.0 "mail transport unavailable"; the route stays.
    assert res.route == Route("nosuch", "[h]", "a@far.test")
    assert res.transport_unavailable and res.destinations == ()
    assert not (await r.resolve("a@other.test")).transport_unavailable


async def test_relocated_maps_apply_after_transport_maps(tmp_path: Path) -> None:
    r = make(tmp_path, {"transport": "* smtp:[x]\n", "reloc": "joe@example.org joe@new.test\n"},
             transport_maps="texthash:transport", relocated_maps="texthash:reloc")
    res = await r.resolve("joe@example.org")
    assert res.route == Route("error", "5.1.6 User has moved to joe@new.test", "joe@example.org")
    assert res.relocated == "joe@new.test" and res.source == "relocated_maps"


async def test_fallback_relay_and_defer_transports_are_exposed(tmp_path: Path) -> None:
    r = make(tmp_path, smtp_fallback_relay="[backup.example.org]:2525, fb2.example.org",
             defer_transports="smtp")
    res = await r.resolve("a@far.test")
    assert res.fallback_relay == ("[backup.example.org]:2525", "fb2.example.org")
    assert res.deferred_transport
    local = await r.resolve("a@example.org")
    assert local.fallback_relay == () and not local.deferred_transport


async def test_route_adapter_for_the_scheduler(tmp_path: Path) -> None:
    r = make(tmp_path, {"sdr": "joe@example.org [joe-relay]\n"},
             sender_dependent_relayhost_maps="texthash:sdr")
    assert await r.route("joe@example.org", "x@far.test") == Route("smtp", "[joe-relay]",
                                                                   "x@far.test")
