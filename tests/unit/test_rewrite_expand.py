"""Recipient expansion after canonical mapping: virtual(5) alias expansion with Postfix's
limits, virtual_alias_domains refusals, automatic BCC, DSN NOTIFY and duplicate elimination
(cleanup_map1n.c, cleanup_out_recipient.c, cleanup_addr.c; postconf(5))."""

from __future__ import annotations

from pathlib import Path

from mailcore.addrclass import DomainClassifier
from mailcore.config import from_mapping
from mailcore.model import EnvelopeRecipient as R
from mailcore.rewrite import EXPANSION_ERROR, Rewriter
from mailcore.tables import TableSet

BASE = {
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "myorigin": "$mydomain",
    "mydestination": "$myhostname, $mydomain",
    "inet_interfaces": "127.0.0.1",
    "virtual_alias_maps": "texthash:virtual",
}


def make(tmp_path: Path, virtual: str = "", files: dict[str, str] | None = None,
         **settings: str) -> Rewriter:
    (tmp_path / "virtual").write_text(virtual)
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    config = from_mapping({**BASE, **settings}, config_dir=tmp_path)
    tables = TableSet(base_dir=tmp_path)
    return Rewriter(config, tables, DomainClassifier(config, tables), trace=True)


def addresses(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.address for r in result.recipients]


async def test_recursive_one_to_many(tmp_path: Path) -> None:
    rw = make(tmp_path, "team@example.com ann, bob@example.com\nbob carl@x.org\n")
    result = await rw.expand_recipients([R("team@example.com", "team@example.com")],
                                        sender="")
    assert addresses(result) == ["ann@example.com", "carl@x.org"]
    assert {r.orig_rcpt for r in result.recipients} == {"team@example.com"}


async def test_expands_to_itself_once(tmp_path: Path) -> None:
    rw = make(tmp_path, "joe@example.com joe@example.com, archive@x.org\n")
    result = await rw.expand_recipients([R("joe@example.com")], sender="")
    assert addresses(result) == ["joe@example.com", "archive@x.org"]
    assert result.defer_reason is None


async def test_no_match_keeps_address_and_sets_orig(tmp_path: Path) -> None:
    rw = make(tmp_path, "other@example.com x@y.org\n")
    result = await rw.expand_recipients([R("joe@example.com")], sender="")
    assert result.recipients == (R("joe@example.com", "joe@example.com"),)


async def test_catchall_and_extension_propagation(tmp_path: Path) -> None:
    rw = make(tmp_path, "@old.org @new.org\njoe jane\n", recipient_delimiter="+")
    result = await rw.expand_recipients([R("ann+x@old.org"), R("joe+y@example.com")],
                                        sender="")
    assert addresses(result) == ["ann+x@new.org", "jane+y@example.com"]
    rw = make(tmp_path, "joe jane\n", recipient_delimiter="+",
              propagate_unmatched_extensions="canonical")
    result = await rw.expand_recipients([R("joe+y@example.com")], sender="")
    assert addresses(result) == ["jane@example.com"]


async def test_pcre_virtual_table(tmp_path: Path) -> None:
    rw = make(tmp_path, files={"v.pcre": "/^(.*)@corp\\.example$/ ${1}@example.com\n"},
              virtual_alias_maps="pcre:v.pcre")
    result = await rw.expand_recipients([R("joe@corp.example")], sender="")
    assert addresses(result) == ["joe@example.com"]


async def test_recursion_limit_defers(tmp_path: Path) -> None:
    rw = make(tmp_path, "a@example.com b@example.com\nb@example.com a@example.com\n",
              virtual_alias_recursion_limit="20")
    rw.warn = lambda m: None
    result = await rw.expand_recipients([R("a@example.com")], sender="")
    assert result.defer_reason == EXPANSION_ERROR
    assert addresses(result) == ["a@example.com"]  # left unexpanded


async def test_expansion_limit_defers(tmp_path: Path) -> None:
    rw = make(tmp_path, "big@example.com " + ", ".join(f"u{i}@x.org" for i in range(5)),
              virtual_alias_expansion_limit="3")
    rw.warn = lambda m: None
    result = await rw.expand_recipients([R("big@example.com")], sender="")
    assert result.defer_reason == EXPANSION_ERROR
    rw = make(tmp_path, "big@example.com " + ", ".join(f"u{i}@x.org" for i in range(3)),
              virtual_alias_expansion_limit="3")
    assert (await rw.expand_recipients([R("big@example.com")], sender="")).defer_reason is None


async def test_address_length_limit_defers(tmp_path: Path) -> None:
    rw = make(tmp_path, "joe@example.com " + "x" * 60 + "@x.org\n",
              virtual_alias_address_length_limit="40")
    rw.warn = lambda m: None
    result = await rw.expand_recipients([R("joe@example.com")], sender="")
    assert result.defer_reason == EXPANSION_ERROR


async def test_virtual_alias_domain_unknown_user_is_refused(tmp_path: Path) -> None:
    rw = make(tmp_path, "ceo@abc.com.tw andy\n", virtual_alias_domains="abc.com.tw")
    result = await rw.expand_recipients([R("ceo@abc.com.tw"), R("nobody@abc.com.tw")],
                                        sender="")
    assert addresses(result) == ["andy@example.com"]
    (failure,) = result.failures
    assert failure.recipient.address == "nobody@abc.com.tw"
    assert (failure.code, failure.status) == (550, "5.1.1")
    assert failure.text == "User unknown in virtual alias table"
    rw = make(tmp_path, "", virtual_alias_domains="abc.com.tw",
              show_user_unknown_table_name="no")
    result = await rw.expand_recipients([R("x@abc.com.tw")], sender="")
    assert result.failures[0].text == "User unknown"


async def test_duplicates_same_orig_and_notify(tmp_path: Path) -> None:
    rw = make(tmp_path, "a@example.com c@example.com\nb@example.com c@example.com\n")
    same = [R("c@example.com", "c@example.com"), R("C@example.com", "c@example.com")]
    assert addresses(await rw.expand_recipients(same, sender="")) == ["c@example.com"]
    # different original recipients stay distinct (enable_original_recipient = yes)
    result = await rw.expand_recipients([R("a@example.com"), R("b@example.com")], sender="")
    assert addresses(result) == ["c@example.com", "c@example.com"]
    # different NOTIFY stays distinct
    result = await rw.expand_recipients(
        [R("c@example.com", "o", "FAILURE"), R("c@example.com", "o", "DELAY")], sender="")
    assert len(result.recipients) == 2
    rw = make(tmp_path, "a@example.com c@example.com\nb@example.com c@example.com\n",
              enable_original_recipient="no")
    result = await rw.expand_recipients([R("a@example.com"), R("b@example.com")], sender="")
    assert addresses(result) == ["c@example.com"]


async def test_duplicate_filter_limit(tmp_path: Path) -> None:
    rw = make(tmp_path, duplicate_filter_limit="1")
    many = [R("a@example.com", "o"), R("b@example.com", "o"), R("b@example.com", "o")]
    assert len((await rw.expand_recipients(many, sender="")).recipients) == 3
    rw = make(tmp_path, duplicate_filter_limit="0")
    assert len((await rw.expand_recipients(many, sender="")).recipients) == 2


async def test_notify_success_gets_expanded_notice(tmp_path: Path) -> None:
    rw = make(tmp_path, "list@example.com a@x.org, b@x.org\n")
    result = await rw.expand_recipients([R("list@example.com", None, "SUCCESS,FAILURE")],
                                        sender="")
    assert [r.address for r in result.expanded] == ["list@example.com"]
    assert {r.notify for r in result.recipients} == {"FAILURE"}
    result = await rw.expand_recipients([R("list@example.com", None, "SUCCESS")], sender="")
    assert {r.notify for r in result.recipients} == {"NEVER"}
    result = await rw.expand_recipients([R("plain@example.com", None, "SUCCESS")], sender="")
    assert result.expanded == () and result.recipients[0].notify == "SUCCESS"


async def test_automatic_bcc(tmp_path: Path) -> None:
    files = {"sbcc": "boss@example.com boss-archive\n", "rbcc": "@example.com inbound@x.org\n"}
    rw = make(tmp_path, "", files, sender_bcc_maps="texthash:sbcc",
              recipient_bcc_maps="texthash:rbcc", always_bcc="audit")
    result = await rw.expand_recipients([R("a@example.com"), R("b@example.com")],
                                        sender="boss@example.com")
    assert addresses(result) == ["boss-archive@example.com", "a@example.com",
                                 "inbound@x.org", "b@example.com", "audit@example.com"]
    bcc = [r for r in result.recipients if r.address == "inbound@x.org"]
    assert bcc == [R("inbound@x.org", "inbound@x.org", "NEVER")]  # added once
    result = await rw.expand_recipients([R("a@x.org")], sender="")  # null sender: no lookup
    assert addresses(result) == ["a@x.org", "audit@example.com"]


async def test_bcc_is_virtual_expanded(tmp_path: Path) -> None:
    rw = make(tmp_path, "audit@example.com a1@x.org, a2@x.org\n", always_bcc="audit")
    result = await rw.expand_recipients([R("u@x.org")], sender="")
    assert addresses(result) == ["u@x.org", "a1@x.org", "a2@x.org"]
