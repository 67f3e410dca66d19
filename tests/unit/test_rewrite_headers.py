"""Header address rewriting: Postfix's header classes (header_opts.c), canonical and
masquerading per header_sender/header_recipient, local_header_rewrite_clients and
remote_header_rewrite_domain (ADDRESS_REWRITING_README, "To rewrite message headers or not")."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.addrclass import DomainClassifier
from mailcore.config import from_mapping
from mailcore.model import ClientInfo
from mailcore.rewrite import Rewriter, header_class, header_rewrite_context
from mailcore.rewrite.headers import address_spans
from mailcore.tables import TableSet

BASE = {
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "myorigin": "$mydomain",
    "mydestination": "$myhostname, $mydomain",
    "inet_interfaces": "127.0.0.1",
    "mynetworks": "192.0.2.0/24",
}


def make(tmp_path: Path, files: dict[str, str] | None = None, **settings: str) -> Rewriter:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    config = from_mapping({**BASE, **settings}, config_dir=tmp_path)
    tables = TableSet(base_dir=tmp_path)
    return Rewriter(config, tables, DomainClassifier(config, tables))


def test_header_classes() -> None:
    for name in ("From", "sender", "Reply-To", "Resent-From", "Resent-Sender", "Errors-To",
                 "Return-Receipt-To", "Disposition-Notification-To", "Mail-Followup-To"):
        assert header_class(name) == "header_sender"
    for name in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc", "Apparently-To",
                 "Resent-Reply-To"):
        assert header_class(name) == "header_recipient"
    assert header_class("Subject") is None and header_class("Received") is None


@pytest.mark.parametrize(("value", "found"), [
    ("joe", ["joe"]),
    ("Joe <joe@x.org>", ["joe@x.org"]),
    ('"Doe, Joe" <joe@x.org>, ann (Ann) ', ["joe@x.org", "ann"]),
    ("team: a, b;, <c>", ["a", "b", "c"]),
    ("undisclosed-recipients:;", []),
    ("Joe Smith", []),  # a phrase, not an address
    ("<>", [""]),
    ("a@x.org,\r\n\tb@y.org", ["a@x.org", "b@y.org"]),
    ('"a b"@x.org (c, d)', ['"a b"@x.org']),
])
def test_address_spans(value: str, found: list[str]) -> None:
    spans = address_spans(value)
    assert [a for _, _, a in spans] == found
    for start, end, addr in spans:
        assert value[start:end] == addr


async def test_local_context_completes_and_keeps_everything_else(tmp_path: Path) -> None:
    rw = make(tmp_path)
    value = '"Doe, Joe" <joe> (the boss),\r\n\tann@example.com, bob@host'
    got = await rw.rewrite_header("To", value, context="local")
    assert got == '"Doe, Joe" <joe@example.com> (the boss),\r\n\tann@example.com, bob@host'
    untouched = "Ann <ann@example.com>"
    assert await rw.rewrite_header("From", untouched, context="local") is untouched
    assert await rw.rewrite_header("Subject", "joe", context="local") == "joe"
    assert await rw.rewrite_header("From", "<>", context="local") == "<>"


async def test_remote_context(tmp_path: Path) -> None:
    rw = make(tmp_path, {"c": "joe joe.smith\n"}, canonical_maps="texthash:c")
    assert await rw.rewrite_header("From", "joe", context="remote") == "joe"
    rw = make(tmp_path, {"c": "joe@example.com joe.smith@example.com\n"},
              canonical_maps="texthash:c", remote_header_rewrite_domain="domain.invalid")
    assert await rw.rewrite_header("From", "joe", context="remote") == "joe@domain.invalid"
    got = await rw.rewrite_header("From", "Joe <joe@example.com>", context="remote")
    assert got == "Joe <joe.smith@example.com>"
    with pytest.raises(ValueError):
        await rw.rewrite_header("From", "joe", context="nowhere")


async def test_header_classes_gate_canonical_and_masquerade(tmp_path: Path) -> None:
    rw = make(tmp_path, {"s": "joe joe.sender\n", "r": "joe joe.rcpt\n"},
              sender_canonical_maps="texthash:s", recipient_canonical_maps="texthash:r",
              masquerade_domains="example.com")
    assert await rw.rewrite_header("From", "joe", context="local") == "joe.sender@example.com"
    assert await rw.rewrite_header("Cc", "joe", context="local") == "joe.rcpt@example.com"
    # masquerade_classes defaults include header_sender and header_recipient
    assert await rw.rewrite_header("To", "x@ws.example.com", context="local") == "x@example.com"
    rw = make(tmp_path, {"c": "joe joe.c\n"}, canonical_maps="texthash:c",
              canonical_classes="envelope_sender, header_recipient")
    assert await rw.rewrite_header("From", "joe", context="local") == "joe@example.com"
    assert await rw.rewrite_header("To", "joe", context="local") == "joe.c@example.com"


async def test_header_rewrite_context(tmp_path: Path) -> None:
    def ctx(**settings: str):  # type: ignore[no-untyped-def]
        config = from_mapping({**BASE, **settings}, config_dir=tmp_path)
        tables = TableSet(base_dir=tmp_path)
        classifier = DomainClassifier(config, tables)

        async def run(addr: str, **kw: object) -> str | None:
            client = ClientInfo(address=addr, sasl_user=str(kw.get("sasl", "")))
            local = bool(kw.get("local", False))
            return await header_rewrite_context(config, tables, classifier, client,
                                                local_submission=local)
        return run

    run = ctx()
    assert await run("127.0.0.1") == "local"  # permit_inet_interfaces (the default)
    assert await run("203.0.113.9") is None
    assert await run("", local=True) == "local"
    run = ctx(local_header_rewrite_clients="permit_mynetworks, permit_sasl_authenticated",
              remote_header_rewrite_domain="domain.invalid")
    assert await run("192.0.2.7") == "local"
    assert await run("203.0.113.9", sasl="joe") == "local"
    assert await run("203.0.113.9") == "remote"
    (tmp_path / "clients").write_text("198.51.100.1 ok\n")
    run = ctx(local_header_rewrite_clients="check_address_map texthash:clients")
    assert await run("198.51.100.1") == "local"
    assert await run("198.51.100.2") is None
    run = ctx(local_header_rewrite_clients="static:all")
    assert await run("198.51.100.2") == "local"
