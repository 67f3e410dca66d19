"""Envelope address rewriting: trivial-rewrite's rewrite rule set, canonical maps,
masquerading, relocated_maps and the resolver's routing stripping (Postfix semantics:
trivial-rewrite(8), canonical(5), postconf(5), ADDRESS_REWRITING_README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.addrclass import DomainClassifier
from mailcore.config import from_mapping
from mailcore.errors import ConfigError
from mailcore.rewrite import Rewriter
from mailcore.rewrite.forms import (
    Completion,
    address_keys,
    masquerade,
    result_addresses,
    rewrite_tree,
    split_address,
)
from mailcore.tables import TableSet

BASE = {
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "myorigin": "$mydomain",
    "mydestination": "$myhostname, $mydomain, localhost",
    "inet_interfaces": "127.0.0.1",
}


def make(tmp_path: Path, files: dict[str, str] | None = None, **settings: str) -> Rewriter:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    config = from_mapping({**BASE, **settings}, config_dir=tmp_path)
    tables = TableSet(base_dir=tmp_path)
    return Rewriter(config, tables, DomainClassifier(config, tables), trace=True)


LOCAL = Completion("example.com", "example.com", True, True, True, True)


@pytest.mark.parametrize(("given", "expected"), [
    ("user", "user@example.com"),  # append_at_myorigin
    ("user@host", "user@host.example.com"),  # append_dot_mydomain
    ("user@host.", "user@host"),  # the trailing dot counts as a dot, then goes
    ("user@a.b.", "user@a.b"),  # one trailing dot goes
    ("user@a.b..", "user@a.b.."),  # but not a double dot
    ("host!user", "user@host.example.com"),  # swap_bangpath
    ("a!b!user", "b!user@a.example.com"),  # only the first bang
    ("user%elsewhere.org", "user@elsewhere.org"),  # percent hack without @
    ("user%a%b.org", "user%a@b.org"),  # the last percent
    ("user%other.org@example.com", "user%other.org@example.com"),  # left for the resolver
    ("@hop1,@hop2:user@dest.org", "user@dest.org"),  # source route stripped
    ('"a@b"', '"a@b"@example.com'),  # quoted @ is not a domain
    ('"a!b"', '"a!b"@example.com'),  # quoted ! is not a bang path
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),  # literals get no .mydomain
    ("", ""),
    ("@", ""),
])
def test_rewrite_tree_local_context(given: str, expected: str) -> None:
    assert rewrite_tree(given, LOCAL)[0] == expected


def test_rewrite_tree_switches() -> None:
    off = Completion("example.com", "example.com", False, False, False, False)
    assert rewrite_tree("user", off)[0] == "user"
    assert rewrite_tree("user@host", off)[0] == "user@host"
    assert rewrite_tree("host!user", off)[0] == "host!user"
    assert rewrite_tree("u%d.org", off)[0] == "u%d.org"
    no_origin = Completion("", "", True, True, True, True)
    assert rewrite_tree("user", no_origin)[0] == "user"


def test_split_and_keys() -> None:
    assert split_address('"a@b"@c.org') == ('"a@b"', "c.org")
    assert split_address('"a@b"') == ('"a@b"', None)
    keys = address_keys("u+x@example.com", "+", local_domain=True)
    assert keys == [("u+x@example.com", None), ("u@example.com", "+x"), ("u+x", None),
                    ("u", "+x"), ("@example.com", None)]
    assert [k for k, _ in address_keys("u+x@r.org", "+", local_domain=False)] == [
        "u+x@r.org", "u@r.org", "@r.org"]
    assert [k for k, _ in address_keys('"a b+x"@r.org', "+", local_domain=False)] == [
        '"a b+x"@r.org', '"a b"@r.org', "@r.org"]


def test_result_addresses() -> None:
    assert result_addresses("a, b@x.org c") == ["a", "b@x.org", "c"]
    assert result_addresses('"x y"@d.org, Joe <j@d.org> (c)') == ['"x y"@d.org', "j@d.org"]


def test_masquerade_function() -> None:
    doms = ("!chairman.cs.nctu.edu.tw", "cs.nctu.edu.tw")
    assert masquerade("u@ws1.cs.nctu.edu.tw", doms) == "u@cs.nctu.edu.tw"
    assert masquerade("u@cs.nctu.edu.tw", doms) == "u@cs.nctu.edu.tw"
    assert masquerade("u@chairman.cs.nctu.edu.tw", doms) == "u@chairman.cs.nctu.edu.tw"
    assert masquerade("u@x.chairman.cs.nctu.edu.tw", doms) == "u@x.chairman.cs.nctu.edu.tw"
    assert masquerade("u@xcs.nctu.edu.tw", doms) == "u@xcs.nctu.edu.tw"  # not a parent
    assert masquerade("u@other.org", doms) == "u@other.org"


async def test_sender_completion_and_null_sender(tmp_path: Path) -> None:
    rw = make(tmp_path)
    assert await rw.rewrite_sender("") == ""
    assert await rw.rewrite_sender("joe") == "joe@example.com"
    assert await rw.rewrite_sender("MAILER-DAEMON") == ""  # MAILER-DAEMON@$myorigin -> <>
    assert await rw.rewrite_sender("mailer-daemon@example.com") == ""
    assert await rw.rewrite_sender("mailer-daemon@other.org") == "mailer-daemon@other.org"


async def test_recipient_completion_and_empty(tmp_path: Path) -> None:
    rw = make(tmp_path)
    assert await rw.rewrite_recipient("joe") == "joe@example.com"
    assert await rw.rewrite_recipient("") == "MAILER-DAEMON@example.com"
    rw = make(tmp_path, empty_address_recipient="postmaster", append_at_myorigin="no")
    assert await rw.rewrite_recipient("") == "postmaster"


async def test_append_dot_mydomain_default_off_at_compat_36(tmp_path: Path) -> None:
    assert await make(tmp_path).rewrite_recipient("joe@host") == "joe@host"
    rw = make(tmp_path, append_dot_mydomain="yes")
    assert await rw.rewrite_recipient("joe@host") == "joe@host.example.com"


async def test_remote_context_uses_remote_header_rewrite_domain(tmp_path: Path) -> None:
    rw = make(tmp_path)
    assert await rw.rewrite_recipient("joe", context="remote") == "joe"
    rw = make(tmp_path, remote_header_rewrite_domain="domain.invalid")
    assert await rw.rewrite_recipient("joe", context="remote") == "joe@domain.invalid"
    with pytest.raises(ValueError):
        await rw.rewrite_recipient("joe", context="elsewhere")


CANONICAL = "joe joe.smith\nbob+list bob-list@lists.example.com\n@old.org @new.org\n"


async def test_canonical_maps_search_order_and_extensions(tmp_path: Path) -> None:
    rw = make(tmp_path, {"canonical": CANONICAL}, canonical_maps="texthash:canonical",
              recipient_delimiter="+")
    # localpart key only for local domains; the result is completed with @$myorigin.
    assert await rw.rewrite_recipient("joe@example.com") == "joe.smith@example.com"
    assert await rw.rewrite_recipient("joe@remote.org") == "joe@remote.org"
    # user+ext matched on "joe": the unmatched extension propagates (canonical is default).
    assert await rw.rewrite_recipient("joe+x@example.com") == "joe.smith+x@example.com"
    # an exact user+ext entry wins and nothing is propagated.
    assert await rw.rewrite_recipient("bob+list") == "bob-list@lists.example.com"
    # @domain -> @otherdomain keeps the user (and its extension).
    assert await rw.rewrite_recipient("ann+y@old.org") == "ann+y@new.org"
    steps = [s for s in rw.steps if s.stage == "canonical_maps" and s.table]
    assert steps[0].key == "joe" and steps[0].keys == ("joe@example.com", "joe")


async def test_propagate_unmatched_extensions_off(tmp_path: Path) -> None:
    rw = make(tmp_path, {"canonical": CANONICAL}, canonical_maps="texthash:canonical",
              recipient_delimiter="+", propagate_unmatched_extensions="")
    assert await rw.rewrite_recipient("joe+x@example.com") == "joe.smith@example.com"


async def test_sender_and_recipient_canonical_classes(tmp_path: Path) -> None:
    files = {"s": "joe sender-joe\n", "r": "joe rcpt-joe\n", "c": "joe common-joe\n"}
    rw = make(tmp_path, files, sender_canonical_maps="texthash:s",
              recipient_canonical_maps="texthash:r")
    assert await rw.rewrite_sender("joe") == "sender-joe@example.com"
    assert await rw.rewrite_recipient("joe") == "rcpt-joe@example.com"
    # sender map first, then canonical_maps on its result
    rw = make(tmp_path, {**files, "s": "joe joe2\n", "c": "joe2 final\n"},
              sender_canonical_maps="texthash:s", canonical_maps="texthash:c")
    assert await rw.rewrite_sender("joe") == "final@example.com"
    rw = make(tmp_path, files, canonical_maps="texthash:c", canonical_classes="envelope_sender")
    assert await rw.rewrite_recipient("joe") == "joe@example.com"
    assert await rw.rewrite_sender("joe") == "common-joe@example.com"
    rw = make(tmp_path, files, sender_canonical_maps="texthash:s",
              sender_canonical_classes="header_sender")
    assert await rw.rewrite_sender("joe") == "joe@example.com"


async def test_canonical_recursion_and_self_mapping(tmp_path: Path) -> None:
    rw = make(tmp_path, {"c": "a b\nb c\nc c\n"}, canonical_maps="texthash:c")
    assert await rw.rewrite_recipient("a") == "c@example.com"
    warnings: list[str] = []
    rw = make(tmp_path, {"loop": "x y\ny x\n"}, canonical_maps="texthash:loop")
    rw.warn = warnings.append
    assert (await rw.rewrite_recipient("x")).endswith("@example.com")
    assert any("nesting" in w for w in warnings)


async def test_canonical_multi_valued_uses_first(tmp_path: Path) -> None:
    warnings: list[str] = []
    rw = make(tmp_path, {"c": "joe a@x.org, b@x.org\n"}, canonical_maps="texthash:c")
    rw.warn = warnings.append
    assert await rw.rewrite_recipient("joe") == "a@x.org"
    assert warnings and "multi-valued" in warnings[0]


async def test_masquerading_classes_and_exceptions(tmp_path: Path) -> None:
    rw = make(tmp_path, masquerade_domains="example.com", masquerade_exceptions="root")
    assert await rw.rewrite_sender("joe@ws.example.com") == "joe@example.com"
    assert await rw.rewrite_sender("root@ws.example.com") == "root@ws.example.com"
    # envelope_recipient is not in the default masquerade_classes
    assert await rw.rewrite_recipient("joe@ws.example.com") == "joe@ws.example.com"
    rw = make(tmp_path, masquerade_domains="example.com",
              masquerade_classes="envelope_recipient")
    assert await rw.rewrite_recipient("joe@ws.example.com") == "joe@example.com"
    assert await rw.rewrite_sender("joe@ws.example.com") == "joe@ws.example.com"


async def test_masquerade_exceptions_table(tmp_path: Path) -> None:
    rw = make(tmp_path, {"exc": "admin x\n"}, masquerade_domains="example.com",
              masquerade_exceptions="texthash:exc")
    assert await rw.rewrite_sender("admin@ws.example.com") == "admin@ws.example.com"
    assert await rw.rewrite_sender("joe@ws.example.com") == "joe@example.com"


async def test_bad_class_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="masquerade_classes"):
        make(tmp_path, masquerade_classes="envelope_sender, header_sendr")


async def test_relocated(tmp_path: Path) -> None:
    rw = make(tmp_path, {"rel": "joe joe@new.org\n@gone.org new.org\n"},
              relocated_maps="texthash:rel", recipient_delimiter="+")
    assert await rw.relocated("joe+x@example.com") == "joe@new.org"
    assert await rw.relocated("anyone@gone.org") == "new.org"
    assert await rw.relocated("joe@remote.org") is None
    assert await make(tmp_path).relocated("joe@example.com") is None


@pytest.mark.parametrize(("given", "expected"), [
    ("u%ext.org@example.com", "u@ext.org"),
    ('"u@ext.org"@example.com', "u@ext.org"),
    ("ext.org!u@example.com", "u@ext.org"),
    ("u@ext.org@example.com", "u@ext.org"),
    ("u@example.com", "u@example.com"),
    ("u%ext.org@remote.org", "u%ext.org@remote.org"),  # routing in a remote domain stays
    ("u%v%ext.org@example.com", "u%v@ext.org"),
])
async def test_unroute(tmp_path: Path, given: str, expected: str) -> None:
    assert await make(tmp_path).unroute(given) == expected


async def test_unroute_respects_switches(tmp_path: Path) -> None:
    rw = make(tmp_path, allow_percent_hack="no", swap_bangpath="no",
              resolve_dequoted_address="no")
    assert await rw.unroute("u%ext.org@example.com") == "u%ext.org@example.com"
    assert await rw.unroute("ext.org!u@example.com") == "ext.org!u@example.com"
    assert await rw.unroute('"u@ext.org"@example.com') == '"u@ext.org"@example.com'
