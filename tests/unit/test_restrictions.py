"""Each restriction and access-table action with fake facts and a fake DNS (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.config import from_mapping
from mailcore.dns import FOUND, NOT_FOUND, TEMPORARY, DnsResult
from mailcore.errors import ConfigError
from mailcore.model import ClientInfo
from mailcore.restrictions import Facts, Restrictions, Verdict
from mailcore.tables import TableSet

BASE = {
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "mydestination": "$myhostname, example.com",
    "inet_interfaces": "127.0.0.1",
    "mynetworks": "127.0.0.0/8",
    "relay_domains": "relay.example.net",
    "local_recipient_maps": "",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
}
OUTSIDE = ClientInfo("192.0.2.7", name="client.example.org", reverse_name="client.example.org")


class FakeDns:
    def __init__(self, records: dict[tuple[str, str], DnsResult] | None = None):
        self.records = records or {}
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> DnsResult:
        self.asked.append((name, rdtype))
        return self.records.get((name, rdtype), DnsResult(NOT_FOUND, detail="host not found"))

    async def addresses(self, name: str) -> DnsResult:
        return await self.query(name, "A")

    async def mx(self, name: str) -> DnsResult:
        return await self.query(name, "MX")

    async def txt(self, name: str) -> DnsResult:
        return await self.query(name, "TXT")

    async def mail_domain(self, name: str) -> DnsResult:
        for rdtype in ("A", "MX"):
            result = await self.query(name, rdtype)
            if result.status != NOT_FOUND:
                return result
        return DnsResult(NOT_FOUND)


@pytest.fixture
def tables():
    table_set = TableSet()
    yield table_set
    table_set.close()


def build(tables: TableSet, dns: FakeDns | None = None, tmp: Path | None = None,
          **settings: str) -> Restrictions:
    config = from_mapping(BASE | settings, config_dir=tmp or ".")
    return Restrictions(config, tables, resolver=dns or FakeDns())


def rcpt(recipient: str, *, sender: str = "s@sender.example.org", client: ClientInfo = OUTSIDE,
         helo: str = "client.example.org", **more: object) -> Facts:
    return Facts("rcpt", client, helo=helo, sender=sender, recipient=recipient, where="RCPT",
                 protocol="ESMTP", **more)  # type: ignore[arg-type]


async def reply(r: Restrictions, facts: Facts) -> str:
    verdict = await r.check(facts)
    assert verdict is not None
    return verdict.reply if verdict.refused else "permit"


def table(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return f"texthash:{tmp_path / name}"


async def test_generic_reject_defer_permit_texts(tables):
    r = build(tables, smtpd_recipient_restrictions="reject")
    assert await reply(r, rcpt("u@example.com")) == (
        "554 5.7.1 <u@example.com>: Recipient address rejected: Access denied")
    r = build(tables, smtpd_client_restrictions="defer")
    assert await reply(r, rcpt("u@example.com")) == (
        "450 4.3.2 <client.example.org[192.0.2.7]>: Client host rejected: Try again later")
    r = build(tables, smtpd_helo_restrictions="permit, reject")
    assert await reply(r, rcpt("u@example.com")) == "permit"


async def test_delay_reject_no_evaluates_at_each_stage(tables):
    r = build(tables, smtpd_delay_reject="no", smtpd_client_restrictions="reject")
    verdict = await r.check(Facts("connect", OUTSIDE, where="CONNECT"))
    assert verdict is not None and verdict.code == 554
    assert await reply(r, rcpt("u@example.com")) == "permit"  # not again at RCPT
    delayed = build(tables, smtpd_client_restrictions="reject")
    assert await delayed.check(Facts("connect", OUTSIDE)) is None
    assert (await reply(delayed, rcpt("u@example.com"))).startswith("554 5.7.1 <client")


async def test_relay_control_and_routing_tricks(tables):
    r = build(tables)
    for recipient in ("u%ext.org@example.com", '"u@ext.org"@example.com',
                      "ext.org!u@example.com", "u@ext.org", "u%ext.org@relay.example.net",
                      '"u@ext.org"@relay.example.net', "u@[192.0.2.1]"):
        assert await reply(r, rcpt(recipient)) == f"554 5.7.1 <{recipient}>: Relay access denied"
    for recipient in ("u@example.com", "u@mx.example.com", "u@relay.example.net",
                      "u@sub.relay.example.net", "u@[127.0.0.1]", "postmaster"):
        assert await reply(r, rcpt(recipient)) == "permit", recipient
    inside = ClientInfo("127.0.0.5")
    assert await reply(r, rcpt("u@ext.org", client=inside)) == "permit"


async def test_defer_and_permit_auth_destination(tables):
    r = build(tables, smtpd_relay_restrictions="defer_unauth_destination")
    assert await reply(r, rcpt("u@ext.org")) == "454 4.7.1 <u@ext.org>: Relay access denied"
    r = build(tables, smtpd_relay_restrictions="permit_auth_destination, reject")
    assert await reply(r, rcpt("u@relay.example.net")) == "permit"
    assert (await reply(r, rcpt("u@ext.org"))).startswith("554 5.7.1 <u@ext.org>: Recipient")


async def test_no_relay_stopper_is_a_config_error(tables):
    with pytest.raises(ConfigError, match="specify at least one working instance"):
        build(tables, smtpd_relay_restrictions="permit_mynetworks",
              smtpd_recipient_restrictions="permit_mynetworks")
    with pytest.raises(ConfigError, match="unknown restriction: bogus_thing") as info:
        build(tables, smtpd_sender_restrictions="bogus_thing")
    assert info.value.file and info.value.file.endswith("main.cf")


async def test_fqdn_and_helo_syntax(tables):
    r = build(tables, smtpd_sender_restrictions="reject_non_fqdn_sender",
              smtpd_recipient_restrictions="reject_non_fqdn_recipient",
              smtpd_helo_restrictions="reject_invalid_helo_hostname, "
                                      "reject_non_fqdn_helo_hostname")
    assert await reply(r, rcpt("u@example.com", sender="s@localhost")) == (
        "504 5.5.2 <s@localhost>: Sender address rejected: need fully-qualified address")
    assert await reply(r, rcpt("u@example.com", helo="bad_host!")) == (
        "501 5.5.2 <bad_host!>: Helo command rejected: Invalid name")
    assert await reply(r, rcpt("u@example.com", helo="pc17")) == (
        "504 5.5.2 <pc17>: Helo command rejected: need fully-qualified hostname")
    assert await reply(r, rcpt("u@example.com", helo="[300.1.1.1]")) == (
        "501 5.5.2 <[300.1.1.1]>: Helo command rejected: invalid ip address")
    assert await reply(r, rcpt("u@example.com", helo="[192.0.2.7]")) == "permit"
    assert await reply(r, rcpt("u@example.com", helo="host.example.org.")) == "permit"
    assert await reply(r, rcpt("u@example.com", sender="")) == "permit"


async def test_unknown_sender_and_recipient_domain(tables):
    dns = FakeDns({("ok.example.org", "MX"): DnsResult(FOUND, ("10 mx.ok.example.org",)),
                   ("flaky.example.org", "A"): DnsResult(TEMPORARY)})
    r = build(tables, dns, smtpd_sender_restrictions="reject_unknown_sender_domain")
    assert await reply(r, rcpt("u@example.com", sender="s@nx.example.org")) == (
        "450 4.1.8 <s@nx.example.org>: Sender address rejected: Domain not found")
    assert await reply(r, rcpt("u@example.com", sender="s@ok.example.org")) == "permit"
    r2 = build(tables, dns, smtpd_recipient_restrictions="reject_unknown_recipient_domain",
               unknown_address_reject_code="550")
    inside = ClientInfo("127.0.0.1")  # may relay: the domain check is what answers
    assert await reply(r2, rcpt("u@nx.example.org", sender="", client=inside)) == (
        "550 5.1.2 <u@nx.example.org>: Recipient address rejected: Domain not found")
    # A temporary failure defers only if the request would otherwise be accepted.
    assert await reply(r2, rcpt("u@flaky.example.org", sender="", client=inside)) == (
        "450 4.1.2 <u@flaky.example.org>: Recipient address rejected: Domain not found")
    assert await reply(r2, rcpt("u@example.com", sender="")) == "permit"  # local: no DNS


async def test_access_table_actions(tables, tmp_path):
    access = table(tmp_path, "access", "\n".join([
        "reject.example.org REJECT", "text.example.org REJECT 5.7.9 go away",
        "defer.example.org DEFER", "code.example.org 421 4.2.1 later please",
        "ok.example.org OK", "dunno.example.org DUNNO", "warn.example.org WARN be careful",
        "hold.example.org HOLD", "discard.example.org DISCARD", "digits.example.org 12345",
        "redirect.example.org REDIRECT trap@example.com",
        "filter.example.org FILTER smtp:[127.0.0.1]:10025",
        "prepend.example.org PREPEND X-Checked: yes",
        "nested.example.org reject_non_fqdn_helo_hostname, permit",
        "user@ OK", "bad.example.org check_client_access texthash:/nowhere"]) + "\n")
    r = build(tables, smtpd_sender_restrictions=f"check_sender_access {access}, reject")

    async def verdict(sender: str, **more: object) -> Verdict:
        result = await r.check(rcpt("u@example.com", sender=sender, **more))
        assert result is not None
        return result
    deny = "Sender address rejected"
    assert (await verdict("a@reject.example.org")).reply == (
        f"554 5.7.1 <a@reject.example.org>: {deny}: Access denied")
    assert (await verdict("a@text.example.org")).reply == (
        f"554 5.7.9 <a@text.example.org>: {deny}: go away")
    assert (await verdict("a@defer.example.org")).reply == (
        f"450 4.7.1 <a@defer.example.org>: {deny}: Access denied")
    assert (await verdict("a@code.example.org")).reply == (
        f"421 4.2.1 <a@code.example.org>: {deny}: later please")
    for ok in ("a@ok.example.org", "a@sub.ok.example.org", "user@anywhere.example.org",
               "a@digits.example.org"):
        assert not (await verdict(ok)).refused, ok
    assert (await verdict("a@dunno.example.org")).code == 554  # falls through to reject
    warned = await verdict("a@warn.example.org")
    assert [(e.whatsup, e.text) for e in warned.events] == [("warn", "be careful")]
    held = await verdict("a@hold.example.org")
    assert held.hold and held.code == 554  # HOLD does not decide; the list goes on
    assert held.events[0].text == "<a@hold.example.org>: Sender address triggers HOLD action"
    discarded = await verdict("a@discard.example.org")
    assert discarded.discard and not discarded.refused
    assert (await verdict("a@redirect.example.org")).redirect == "trap@example.com"
    assert (await verdict("a@filter.example.org")).filter == "smtp:[127.0.0.1]:10025"
    assert (await verdict("a@prepend.example.org")).prepend == ("X-Checked: yes",)
    assert (await verdict("a@nested.example.org", helo="pc17")).code == 504
    assert not (await verdict("a@nested.example.org")).refused
    broken = await verdict("a@bad.example.org")
    assert broken.reply == "451 4.3.5 Server configuration error"


async def test_discard_accepts_the_rest_of_the_transaction(tables, tmp_path):
    access = table(tmp_path, "access", "spam.example.org DISCARD\n")
    r = build(tables, smtpd_sender_restrictions=f"check_sender_access {access}",
              smtpd_recipient_restrictions="reject")
    first = await r.check(rcpt("u@example.com", sender="x@spam.example.org"))
    assert first is not None and first.discard and not first.refused
    later = await r.check(rcpt("u@ext.org", sender="x@spam.example.org", discard=True))
    assert later is not None and not later.refused and not later.discard


async def test_client_and_helo_and_recipient_access_keys(tables, tmp_path):
    clients = table(tmp_path, "clients", "example.org REJECT by name\n192.0.2 REJECT net\n")
    helos = table(tmp_path, "helos", "bad.example HOLD\n")
    rcpts = table(tmp_path, "rcpts", "abuse@ OK\nu+ext@example.com REJECT ext\n")
    r = build(tables, smtpd_client_restrictions=f"check_client_access {clients}",
              smtpd_recipient_restrictions=f"check_recipient_access {rcpts}, "
                                           "reject_unauth_destination",
              smtpd_helo_restrictions=f"check_helo_access {helos}",
              recipient_delimiter="+")
    assert await reply(r, rcpt("u@example.com")) == (
        "554 5.7.1 <client.example.org[192.0.2.7]>: Client host rejected: by name")
    nameless = ClientInfo("192.0.2.9")
    assert await reply(r, rcpt("u@example.com", client=nameless)) == (
        "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: net")
    other = ClientInfo("198.51.100.1")
    assert await reply(r, rcpt("u+ext@example.com", client=other)) == (
        "554 5.7.1 <u+ext@example.com>: Recipient address rejected: ext")
    # An OK never makes a routed recipient relayable.
    assert await reply(r, rcpt("abuse%ext.org@relay.example.net", client=other)) == (
        "554 5.7.1 <abuse%ext.org@relay.example.net>: Relay access denied")
    held = await r.check(rcpt("u@example.com", client=other, helo="mail.bad.example"))
    assert held is not None and held.hold


async def test_warn_if_reject_and_defer_if_permit(tables):
    r = build(tables, smtpd_recipient_restrictions="warn_if_reject reject, permit")
    verdict = await r.check(rcpt("u@example.com"))
    assert verdict is not None and not verdict.refused
    assert verdict.events[0].whatsup == "reject_warning"
    assert verdict.events[0].text.startswith("554 5.7.1 <u@example.com>: Recipient address")
    r = build(tables, smtpd_recipient_restrictions="defer_if_permit, permit")
    assert await reply(r, rcpt("u@example.com")) == (
        "450 4.7.0 <u@example.com>: Recipient address rejected: defer_if_permit requested")
    r = build(tables, smtpd_recipient_restrictions="defer_if_reject, reject")
    assert await reply(r, rcpt("u@example.com")) == (
        "450 4.7.0 <u@example.com>: Recipient address rejected: defer_if_reject requested")


async def test_restriction_classes(tables, tmp_path):
    access = table(tmp_path, "access", "vip@example.com permissive\n")
    r = build(tables, smtpd_restriction_classes="permissive, strict",
              permissive="permit", strict="reject_non_fqdn_helo_hostname",
              smtpd_recipient_restrictions=f"check_recipient_access {access}, strict")
    assert await reply(r, rcpt("vip@example.com", helo="pc17")) == "permit"
    assert (await reply(r, rcpt("u@example.com", helo="pc17"))).startswith("504 5.5.2 <pc17>")
    with pytest.raises(ConfigError, match="needs a definition"):
        build(tables, smtpd_restriction_classes="missing")


async def test_rbl_client_and_rhsbl_sender(tables, tmp_path):
    dns = FakeDns({
        ("7.2.0.192.rbl.test", "A"): DnsResult(FOUND, ("127.0.0.2",)),
        ("7.2.0.192.rbl.test", "TXT"): DnsResult(FOUND, ("listed for spam",)),
        ("7.2.0.192.other.test", "A"): DnsResult(FOUND, ("127.0.0.10",)),
        ("bad.example.org.rhs.test", "A"): DnsResult(FOUND, ("127.0.0.2",)),
    })
    r = build(tables, dns, smtpd_client_restrictions="reject_rbl_client rbl.test")
    assert await reply(r, rcpt("u@example.com")) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using rbl.test; "
        "listed for spam")
    r = build(tables, dns, smtpd_client_restrictions="reject_rbl_client other.test=127.0.0.2")
    assert await reply(r, rcpt("u@example.com")) == "permit"
    r = build(tables, dns,
              smtpd_client_restrictions="reject_rbl_client other.test=127.0.0.[9..11]")
    assert (await reply(r, rcpt("u@example.com"))).startswith("554 5.7.1 Service")
    maps = table(tmp_path, "rbl_replies", "rhs.test 550 5.7.2 $rbl_what is on $rbl_domain\n")
    r = build(tables, dns, smtpd_sender_restrictions="reject_rhsbl_sender rhs.test",
              rbl_reply_maps=maps)
    assert await reply(r, rcpt("u@example.com", sender="x@bad.example.org")) == (
        "550 5.7.2 x@bad.example.org is on rhs.test")
    assert await reply(r, rcpt("u@example.com", sender="x@good.example.org")) == "permit"


async def test_unauth_pipelining_and_multi_recipient_bounce(tables):
    r = build(tables, smtpd_data_restrictions="reject_unauth_pipelining, "
                                              "reject_multi_recipient_bounce")
    data = Facts("data", OUTSIDE, helo="c.example.org", sender="a@b.example.org",
                 where="DATA", protocol="ESMTP", rcpt_count=1, pipelined=True)
    verdict = await r.check(data)
    assert verdict is not None and verdict.reply == (
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining")
    bounce = Facts("data", OUTSIDE, sender="", where="DATA", protocol="ESMTP", rcpt_count=2)
    verdict = await r.check(bounce)
    assert verdict is not None and verdict.reply == (
        "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce")


async def test_recipient_validation(tables, tmp_path):
    users = table(tmp_path, "users", "alice x\n")
    virtual = table(tmp_path, "virtual", "info@alias.example alice@example.com\n")
    mailboxes = table(tmp_path, "mailboxes", "bob@box.example box/bob/\n")
    relayed = table(tmp_path, "relayed", "carol@relay.example.net x\n")
    moved = table(tmp_path, "moved", "dave@example.com dave@new.example\n")
    r = build(tables, local_recipient_maps=users, virtual_alias_maps=virtual,
              virtual_alias_domains="alias.example", virtual_mailbox_domains="box.example",
              virtual_mailbox_maps=mailboxes, relay_recipient_maps=relayed,
              relocated_maps=moved)
    unknown = "Recipient address rejected: User unknown in"
    assert await reply(r, rcpt("alice@example.com")) == "permit"
    assert await reply(r, rcpt("ALICE@mx.example.com")) == "permit"
    assert await reply(r, rcpt("zed@example.com")) == (
        f"550 5.1.1 <zed@example.com>: {unknown} local recipient table")
    assert await reply(r, rcpt("postmaster@example.com")) == "permit"
    assert await reply(r, rcpt("info@alias.example")) == "permit"
    assert await reply(r, rcpt("nope@alias.example")) == (
        f"550 5.1.1 <nope@alias.example>: {unknown} virtual alias table")
    assert await reply(r, rcpt("bob@box.example")) == "permit"
    assert await reply(r, rcpt("eve@box.example")) == (
        f"550 5.1.1 <eve@box.example>: {unknown} virtual mailbox table")
    assert await reply(r, rcpt("carol@relay.example.net")) == "permit"
    assert await reply(r, rcpt("mallory@relay.example.net")) == (
        f"550 5.1.1 <mallory@relay.example.net>: {unknown} relay recipient table")
    assert await reply(r, rcpt("dave@example.com")) == (
        "550 5.1.6 <dave@example.com>: Recipient address rejected: User has moved to "
        "dave@new.example")
    quiet = build(tables, local_recipient_maps=users, show_user_unknown_table_name="no",
                  unknown_local_recipient_reject_code="450")
    assert await reply(quiet, rcpt("zed@example.com")) == (
        "450 4.1.1 <zed@example.com>: Recipient address rejected: User unknown")
    off = build(tables, local_recipient_maps=users, smtpd_reject_unlisted_recipient="no")
    assert await reply(off, rcpt("zed@example.com")) == "permit"
    sender_check = build(tables, local_recipient_maps=users,
                         smtpd_sender_restrictions="reject_unlisted_sender")
    assert await reply(sender_check, rcpt("alice@example.com", sender="zed@example.com")) == (
        "550 5.1.0 <zed@example.com>: Sender address rejected: User unknown in local "
        "recipient table")


async def test_lookup_failure_defers_never_rejects(tables):
    r = build(tables, local_recipient_maps="texthash:/nonexistent/users")
    assert await reply(r, rcpt("alice@example.com")) == (
        "451 4.3.0 <alice@example.com>: Temporary lookup failure")


async def test_permit_mx_backup(tables):
    dns = FakeDns({
        ("backup.example.org", "MX"): DnsResult(FOUND, ("10 primary.example.org",
                                                        "20 mx.example.com")),
        ("primary.example.org", "A"): DnsResult(FOUND, ("192.0.2.50",)),
        ("notme.example.org", "MX"): DnsResult(FOUND, ("10 primary.example.org",)),
        ("broken.example.org", "MX"): DnsResult(TEMPORARY),
    })
    r = build(tables, dns, smtpd_relay_restrictions="permit_mx_backup, reject_unauth_destination")
    assert await reply(r, rcpt("u@backup.example.org")) == "permit"
    assert (await reply(r, rcpt("u@notme.example.org"))).startswith("554 5.7.1")
    assert await reply(r, rcpt("u@broken.example.org")) == (
        "450 4.4.4 <u@broken.example.org>: Recipient address rejected: Unable to look up "
        "mail exchanger information")
    restricted = build(tables, dns, permit_mx_backup_networks="198.51.100.0/24",
                       smtpd_relay_restrictions="permit_mx_backup, reject_unauth_destination")
    assert (await reply(restricted, rcpt("u@backup.example.org"))).startswith("554 5.7.1")


async def test_soft_bounce_and_bad_reply_codes(tables, tmp_path):
    access = table(tmp_path, "access", "a.example.org 299 odd\n")
    r = build(tables, soft_bounce="yes", smtpd_recipient_restrictions="reject")
    assert (await reply(r, rcpt("u@example.com"))).startswith("454 4.7.1 <u@example.com>")
    r = build(tables, smtpd_sender_restrictions=f"check_sender_access {access}")
    verdict = await r.check(rcpt("u@example.com", sender="x@a.example.org"))
    # "299 odd" is no reply code, so Postfix reads it as a restriction list: a config error.
    assert verdict is not None and verdict.reply == "451 4.3.5 Server configuration error"
    assert "299 odd" in verdict.events[-1].text
