"""mx.py: next-hop syntax, MX ordering, implicit and null MX, lookup failures, loops."""

from __future__ import annotations

import random

import pytest
from support.fakedns import FakeLookups

from mailcore.config import from_mapping
from mailcore.delivery import mx

ME = mx.Self("me.test", frozenset({"192.0.2.99"}))


@pytest.mark.parametrize(("text", "host", "port", "use_mx"), [
    ("example.test", "example.test", 25, True),
    ("Example.TEST.", "example.test", 25, True),
    ("[mail.example.test]", "mail.example.test", 25, False),
    ("example.test:2525", "example.test", 2525, True),
    ("[mail.example.test]:submission", "mail.example.test", 587, False),
    ("[192.0.2.1]", "192.0.2.1", 25, False),
    ("[192.0.2.1]:26", "192.0.2.1", 26, False),
    ("[ipv6:2001:DB8::1]", "2001:db8::1", 25, False),
    ("[2001:db8::1]:27", "2001:db8::1", 27, False),
])
def test_nexthop_forms(text: str, host: str, port: int, use_mx: bool) -> None:
    dest = mx.parse_nexthop(text, 25)
    assert (dest.host, dest.port, dest.mx) == (host, port, use_mx)


@pytest.mark.parametrize("bad", ["", "[host", "[host]x", "host:0", "host:nosuchservice",
                                 "[]", "bad..name"])
def test_bad_nexthops(bad: str) -> None:
    with pytest.raises(mx.NexthopError):
        mx.parse_nexthop(bad, 25)


def test_nexthop_lists_and_null_mx_records() -> None:
    assert mx.split_nexthops("a.test, [b.test]:26  c.test") == ["a.test", "[b.test]:26", "c.test"]
    assert mx.parse_mx(["10 MX1.Example.", "0 .", "junk"]) == [(10, "mx1.example"), (0, "")]


def test_equal_preferences_are_shuffled_lower_first() -> None:
    targets = [mx.Target(f"h{i}", f"192.0.2.{i}", 25, 10 if i < 4 else 5) for i in range(8)]
    orders = {tuple(t.hostname for t in mx.order_targets(targets, random.Random(seed)))
              for seed in range(20)}
    assert len(orders) > 1
    for order in orders:
        assert set(order[:4]) == {"h4", "h5", "h6", "h7"}


async def resolve(lookups: FakeLookups, nexthop: str, *, loop: bool = True) -> mx.Resolution:
    return await mx.resolve(mx.parse_nexthop(nexthop, 25), lookups, me=ME, loop_detect=loop,
                            rng=random.Random(1))


async def test_mx_preference_order_and_address_records() -> None:
    lookups = FakeLookups({
        ("d.test", "MX"): ["20 b.d.test.", "10 a.d.test."],
        ("a.d.test", "A"): ["192.0.2.1"], ("a.d.test", "AAAA"): ["2001:db8::1"],
        ("b.d.test", "A"): ["192.0.2.2"]})
    found = await resolve(lookups, "d.test")
    assert [(t.pref, t.hostname) for t in found.targets][-1] == (20, "b.d.test")
    assert {t.address for t in found.targets[:2]} == {"192.0.2.1", "2001:db8::1"}
    assert found.failure is None


async def test_implicit_mx_only_without_mx_records() -> None:
    lookups = FakeLookups({("d.test", "A"): ["192.0.2.7"]})
    found = await resolve(lookups, "d.test")
    assert [t.relay for t in found.targets] == ["d.test[192.0.2.7]:25"]
    with_mx = FakeLookups({("d.test", "A"): ["192.0.2.7"], ("d.test", "MX"): ["10 m.test."],
                           ("m.test", "A"): ["192.0.2.8"]})
    assert [t.address for t in (await resolve(with_mx, "d.test")).targets] == ["192.0.2.8"]


async def test_lookup_failures() -> None:
    null = await resolve(FakeLookups({("d.test", "MX"): ["0 ."]}), "d.test")
    assert null.failure is not None and null.failure.dsn == "5.1.10" and null.failure.final
    missing = await resolve(FakeLookups({}), "nowhere.test")
    assert missing.failure is not None and missing.failure.dsn == "5.1.2"
    assert "Host or domain name not found" in missing.failure.reason
    broken = await resolve(FakeLookups({}, frozenset({"d.test"})), "d.test")
    assert broken.failure is not None and broken.failure.dsn == "4.4.3"
    nohost = await resolve(FakeLookups({("d.test", "MX"): ["10 gone.test."]}), "d.test")
    assert nohost.failure is not None and nohost.failure.dsn == "5.4.4"
    soft = await resolve(FakeLookups({("d.test", "MX"): ["10 gone.test.", "20 x.test."]},
                                     frozenset({"x.test"})), "d.test")
    assert soft.failure is not None and soft.failure.dsn == "4.4.3"
    brackets = await resolve(FakeLookups({("d.test", "MX"): ["10 m.test."]}), "[d.test]")
    assert brackets.failure is not None and brackets.failure.dsn == "5.1.2"


async def test_mx_that_is_myself() -> None:
    records = {("d.test", "MX"): ["10 me.d.test.", "20 backup.d.test."],
               ("me.d.test", "A"): ["192.0.2.99"], ("backup.d.test", "A"): ["192.0.2.5"]}
    loop = await resolve(FakeLookups(records), "d.test")
    assert loop.failure is not None and loop.failure.loop and loop.failure.dsn == "5.4.6"
    assert loop.failure.reason == "mail for d.test loops back to myself"
    # Not on port 25: no loop detection at all, as in Postfix.
    assert len((await resolve(FakeLookups(records), "d.test", loop=False)).targets) == 2
    backup = {("d.test", "MX"): ["10 p.d.test.", "20 me.test."], ("p.d.test", "A"): ["192.0.2.4"],
              ("me.test", "A"): ["198.51.100.1"]}
    found = await resolve(FakeLookups(backup), "d.test")
    assert [t.hostname for t in found.targets] == ["p.d.test"] and found.i_am_mx
    literal = await resolve(FakeLookups({}), "[192.0.2.99]")
    assert literal.failure is not None and literal.failure.dsn == "5.4.6"


def test_own_addresses_from_inet_interfaces() -> None:
    every = ["127.0.0.1", "192.0.2.10", "::1"]
    config = from_mapping({"myhostname": "me.test", "inet_interfaces": "all",
                           "proxy_interfaces": "198.51.100.7"})
    assert mx.own_addresses(config, every) == {"127.0.0.1", "192.0.2.10", "::1",
                                               "198.51.100.7"}
    loopback = from_mapping({"myhostname": "me.test", "inet_interfaces": "loopback-only"})
    assert mx.own_addresses(loopback, every) == {"127.0.0.1", "::1"}
