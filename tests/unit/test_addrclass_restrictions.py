"""Address classes (trivial-rewrite) and the default relay policy (smtpd_relay_restrictions)."""

import pytest

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.config import from_mapping
from mailcore.errors import ConfigError
from mailcore.model import ClientInfo
from mailcore.restrictions import Facts, Restrictions
from mailcore.tables import TableSet

BASE = {
    "myhostname": "mx.example.com",
    "mydestination": "$myhostname, localhost, example.com",
    "virtual_alias_domains": "abc.com.tw",
    "virtual_mailbox_domains": "xyz.com.tw",
    "relay_domains": "secureLab.cs.nctu.edu.tw",
    "inet_interfaces": "127.0.0.1",
    "mynetworks": "127.0.0.0/8",
    "local_recipient_maps": "",  # no recipient validation: these tests are about relaying
}


@pytest.fixture
def tables():
    table_set = TableSet()
    yield table_set
    table_set.close()


@pytest.mark.parametrize(("domain", "expected"), [
    ("example.com", AddressClass.LOCAL),
    ("EXAMPLE.COM.", AddressClass.LOCAL),
    ("", AddressClass.LOCAL),
    ("[127.0.0.1]", AddressClass.LOCAL),
    ("[192.0.2.9]", AddressClass.DEFAULT),
    ("abc.com.tw", AddressClass.VIRTUAL_ALIAS),
    ("xyz.com.tw", AddressClass.VIRTUAL_MAILBOX),
    ("securelab.cs.nctu.edu.tw", AddressClass.RELAY),
    ("host.securelab.cs.nctu.edu.tw", AddressClass.RELAY),  # relay_domains matches subdomains
    ("sub.example.com", AddressClass.DEFAULT),  # mydestination does not
    ("elsewhere.org", AddressClass.DEFAULT),
])
async def test_address_classes(tables, domain, expected):
    classifier = DomainClassifier(from_mapping(BASE), tables)
    assert await classifier.classify(domain) is expected


def facts(client: str, recipient: str) -> Facts:
    return Facts(stage="rcpt", client=ClientInfo(address=client), helo="client.test",
                 sender="s@elsewhere.org", recipient=recipient)


async def test_default_relay_policy_is_postfixs_defer(tables):
    restrictions = Restrictions(from_mapping(BASE), tables)
    verdict = await restrictions.check(facts("192.0.2.7", "u@elsewhere.org"))
    assert verdict.reply == "454 4.7.1 <u@elsewhere.org>: Relay access denied"
    assert (await restrictions.check(facts("127.0.0.2", "u@elsewhere.org"))).action == "permit"
    assert (await restrictions.check(facts("192.0.2.7", "u@example.com"))).action == "permit"
    assert (await restrictions.check(facts("192.0.2.7", "u@x.securelab.cs.nctu.edu.tw"))
            ).action == "permit"


async def test_reject_unauth_destination_answers_554(tables):
    config = from_mapping(BASE | {
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"})
    verdict = await Restrictions(config, tables).check(facts("192.0.2.7", "u@elsewhere.org"))
    assert verdict.reply == "554 5.7.1 <u@elsewhere.org>: Relay access denied"


async def test_outbound_gateway_mynetworks_table(tmp_path, tables):
    # Seed: "mynetworks = hash:/usr/local/etc/postfix/mynetworks" for an outbound gateway;
    # a CIDR table file is the form that lists networks.
    (tmp_path / "mynetworks").write_text("140.113.0.0/16 OK\n10.113.0.0/16 OK\n")
    config = from_mapping(BASE | {"mynetworks": f"127.0.0.0/8 cidr:{tmp_path}/mynetworks"})
    restrictions = Restrictions(config, tables)
    assert (await restrictions.check(facts("140.113.5.5", "u@gmail.com"))).action == "permit"
    assert (await restrictions.check(facts("140.114.5.5", "u@gmail.com"))).action == "defer"


async def test_other_stages_decide_nothing_yet(tables):
    restrictions = Restrictions(from_mapping(BASE), tables)
    assert await restrictions.check(Facts(stage="mail", client=ClientInfo("192.0.2.1"))) is None


def test_unknown_restriction_is_a_config_error(tables):
    config = from_mapping(BASE | {"smtpd_relay_restrictions": "permit_mynetworks, bogus"})
    with pytest.raises(ConfigError, match="unknown restriction: bogus"):
        Restrictions(config, tables)


def test_both_lists_empty_is_refused_as_an_open_relay(tables):
    config = from_mapping(BASE | {"smtpd_relay_restrictions": "",
                                  "smtpd_recipient_restrictions": ""})
    with pytest.raises(ConfigError, match="reject_unauth_destination"):
        Restrictions(config, tables)
