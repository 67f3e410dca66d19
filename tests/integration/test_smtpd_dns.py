"""mailcore.dns against the test DNS server: answers, NXDOMAIN, SERVFAIL and silence are
told apart, and client_name confirms PTR names forward."""

from __future__ import annotations

from support.dnsserver import DnsServer

from mailcore.dns import FOUND, NOT_FOUND, TEMPORARY, Resolver

RECORDS = {
    "host.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "v4only.test": {"A": ["192.0.2.9"]},
    "1.2.0.192.in-addr.arpa": {"PTR": ["host.test"]},
    "2.2.0.192.in-addr.arpa": {"PTR": ["other.test"]},
    "other.test": {"A": ["198.51.100.1"]},
    "3.2.0.192.in-addr.arpa": {"PTR": ["broken.test"]},
    "4.2.0.192.in-addr.arpa": {"PTR": ["192.0.2.4"]},
}


def resolver(dns: DnsServer) -> Resolver:
    return Resolver([("127.0.0.1", dns.port)], timeout=0.5)


async def test_lookups_are_classified() -> None:
    async with DnsServer(RECORDS, servfail=["broken.test"], drop=["silent.test"]) as dns:
        r = resolver(dns)
        found = await r.addresses("host.test")
        assert (found.status, sorted(found.values)) == (FOUND, ["192.0.2.1", "2001:db8::1"])
        assert (await r.addresses("v4only.test")).values == ("192.0.2.9",)
        assert (await r.addresses("nowhere.test")).status == NOT_FOUND
        assert (await r.query("host.test", "MX")).status == NOT_FOUND
        assert (await r.addresses("broken.test")).status == TEMPORARY
        assert (await r.addresses("silent.test")).status == TEMPORARY
        assert (await r.ptr("192.0.2.1")).values == ("host.test",)


async def test_forward_confirmed_client_names() -> None:
    async with DnsServer(RECORDS, servfail=["broken.test", "5.2.0.192.in-addr.arpa"]) as dns:
        r = resolver(dns)
        assert tuple(await r.client_name("192.0.2.1")) == ("host.test", "host.test")
        other = await r.client_name("192.0.2.2")
        assert (other.name, other.reverse_name, other.status) == (
            "unknown", "other.test", NOT_FOUND)
        broken = await r.client_name("192.0.2.3")
        assert (broken.name, broken.reverse_name, broken.status) == (
            "unknown", "broken.test", TEMPORARY)
        numeric = await r.client_name("192.0.2.4")
        assert (numeric.name, numeric.reverse_name) == ("unknown", "unknown")
        failing = await r.client_name("192.0.2.5")
        assert (failing.name, failing.status) == ("unknown", TEMPORARY)
        missing = await r.client_name("192.0.2.6")
        assert (missing.name, missing.status) == ("unknown", NOT_FOUND)
