"""dns.py's pure parts: dns_nameservers syntax and the PTR host-name check."""

from __future__ import annotations

import pytest

from mailcore.config import from_mapping
from mailcore.dns import ClientNames, Resolver, _valid_hostname, parse_nameservers
from mailcore.errors import ConfigError


def test_nameserver_forms() -> None:
    assert parse_nameservers(["192.0.2.1", "127.0.0.1:5353", "[::1]:53", "2001:db8::1"]) == [
        ("192.0.2.1", 53), ("127.0.0.1", 5353), ("::1", 53), ("2001:db8::1", 53)]


@pytest.mark.parametrize("bad", ["ns.example.com", "127.0.0.1:0", "127.0.0.1:x", "[::1",
                                 "[::1]x", "1.2.3.4:70000"])
def test_bad_nameservers(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_nameservers([bad])


def test_resolver_from_config_uses_only_the_listed_servers() -> None:
    config = from_mapping({"dns_nameservers": "127.0.0.1:5353", "dns_timeout": "3s",
                           "myhostname": "mx.test"})
    resolver = Resolver.from_config(config)
    [server] = resolver._resolver.nameservers
    assert (server.address, server.port) == ("127.0.0.1", 5353)
    assert resolver._resolver.lifetime == 3


@pytest.mark.parametrize(("name", "ok"), [("mail.example.com", True), ("a-b.c", True),
                                          ("1.2.3.4", False), ("123.456", False),
                                          ("-a.com", False), ("a..b", False), ("", False)])
def test_ptr_names_must_be_host_names(name: str, ok: bool) -> None:
    assert _valid_hostname(name) is ok


def test_client_names_unpack_as_a_pair() -> None:
    name, reverse = ClientNames("a.test", "a.test")
    assert (name, reverse) == ("a.test", "a.test")
