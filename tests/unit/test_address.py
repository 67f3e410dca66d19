"""Unit tests for mailcore.address: RFC 5321/6531 paths, IDNA, xtext, ORCPT, policy helpers."""

from __future__ import annotations

import pytest

from mailcore.address import (
    MAX_DOMAIN,
    MAX_LOCAL,
    MAX_PATH,
    Address,
    AddressError,
    domain_to_ascii,
    is_hostile_local,
    parse_address,
    parse_mail_params,
    parse_orcpt,
    parse_path,
    quote_local,
    split_extension,
    split_path_and_params,
    xtext_decode,
    xtext_encode,
)


def rcpt(text: str, **kw: bool) -> Address:
    kw.setdefault("smtputf8", True)
    addr = parse_path(text, allow_empty=False, **kw)
    assert addr is not None
    return addr


def refused(text: str, **kw: bool) -> AddressError:
    kw.setdefault("smtputf8", True)
    kw.setdefault("allow_empty", False)
    with pytest.raises(AddressError) as info:
        parse_path(text, **kw)
    return info.value


# ---------------------------------------------------------------- basic paths


def test_simple_path() -> None:
    assert rcpt("<user@example.com>") == Address("user", "example.com")


def test_null_path_allowed_for_sender() -> None:
    assert parse_path("<>", allow_empty=True, smtputf8=False) is None


def test_null_path_refused_for_recipient() -> None:
    err = refused("<>")
    assert err.reply == "501 5.1.3 Bad recipient address syntax"


def test_sender_errors_use_5_1_7() -> None:
    err = refused("<a..b@d>", for_sender=True)
    assert err.reply == "501 5.1.7 Bad sender address syntax"
    assert isinstance(err, ValueError)
    assert "atom" in err.detail


def test_brackets_required_by_default() -> None:
    refused("user@example.com")
    refused("<user@example.com")
    refused("user@example.com>")


def test_unbracketed_when_allowed() -> None:
    assert rcpt("u@d", allow_unbracketed=True) == Address("u", "d")
    refused("<u@d", allow_unbracketed=True)


def test_uppercase_domain_lowered_local_kept() -> None:
    assert rcpt("<John.Doe@EXAMPLE.Org>") == Address("John.Doe", "example.org")


def test_trailing_dot_stripped_like_postfix_resolver() -> None:
    assert rcpt("<u@example.com.>").domain == "example.com"
    refused("<u@example.com..>")
    refused("<u@.>")
    refused("<u@>")


@pytest.mark.parametrize(
    "path",
    [
        "<u@-bad.example>",
        "<u@bad-.example>",
        "<u@ex ample.com>",
        "<u@exa!mple.com>",
        "<u@.example.com>",
        "<u@a..b>",
        "<u@ab--cd.example>",
    ],
)
def test_bad_domains(path: str) -> None:
    refused(path)


def test_underscore_in_domain_label_accepted_as_postfix_does() -> None:
    assert rcpt("<u@mail_host.example>").domain == "mail_host.example"


# ---------------------------------------------------------------- local parts


def test_quoted_local_part_decoded() -> None:
    addr = rcpt('<"john \\"j\\" doe"@d>')
    assert addr.local == 'john "j" doe'
    assert addr.text == '"john \\"j\\" doe"@d'


def test_needlessly_quoted_local_part_canonicalised() -> None:
    addr = rcpt('<"user"@d>')
    assert addr == Address("user", "d")
    assert addr.text == "user@d"


def test_quoted_pair_of_plain_char() -> None:
    assert rcpt('<"a\\b"@d>').local == "ab"


@pytest.mark.parametrize(
    "path",
    ["<.u@d>", "<u.@d>", "<u..v@d>", '<""@d>', '<"unterminated@d>', '<"a\\>', '<a"b"@d>'],
)
def test_bad_local_parts(path: str) -> None:
    refused(path)


def test_percent_hack_and_bang_path_left_intact() -> None:
    assert rcpt("<u%v@d>") == Address("u%v", "d")
    assert rcpt("<host!user@d>") == Address("host!user", "d")


def test_double_at_is_syntax_error() -> None:
    err = refused("<u@ext@[127.0.0.1]>")
    assert err.code == 501
    with pytest.raises(AddressError):
        parse_address("u@ext@[127.0.0.1]")


# ---------------------------------------------------------------- control characters


@pytest.mark.parametrize("ch", ["\0", "\r", "\n", "\t", "\x1b", "\x7f", "\x85"])
def test_control_chars_refused_everywhere(ch: str) -> None:
    refused(f"<u{ch}x@d>")
    refused(f'<"u{ch}x"@d>')
    refused(f'<"u\\{ch}x"@d>')
    refused(f"<u@d{ch}x>")
    with pytest.raises(AddressError):
        parse_address(f'"a{ch}"@d')


def test_quoted_bare_cr_refused() -> None:
    err = refused('<"\r"@d>')
    assert "U+000D" in err.detail


def test_unicode_line_separator_and_surrogates_refused() -> None:
    refused("<u\u2028x@d>")
    refused("<u\udcffx@d>")


# ---------------------------------------------------------------- aiosmtpd's lax forms


@pytest.mark.parametrize(
    "path",
    [
        "< u@d>",
        "<u@d >",
        "<u @d>",
        "<u(comment)@d>",
        "<Name <u@d>>",
        "<u@d>junk",
        "<<u@d>>",
        "<u@[1.2.3.4]x>",
        "<u@d,v@e>",
        "<@d:>",
        "<:u@d>",
    ],
)
def test_lax_forms_refused(path: str) -> None:
    refused(path)


# ---------------------------------------------------------------- SMTPUTF8


def test_utf8_local_needs_smtputf8() -> None:
    err = refused("<jösé@d>", smtputf8=False)
    assert err.reply == "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
    assert err.utf8_required
    assert rcpt("<jösé@d>").local == "jösé"


def test_utf8_domain_needs_smtputf8() -> None:
    refused("<u@bücher.example>", smtputf8=False)
    with pytest.raises(AddressError) as info:
        parse_address("u@bücher.example", smtputf8=False)
    assert info.value.code == 553


def test_a_label_accepted_without_smtputf8() -> None:
    assert rcpt("<u@xn--bcher-kva.example>", smtputf8=False).domain == "xn--bcher-kva.example"


def test_utf8_local_is_dot_string_not_quoted() -> None:
    assert rcpt("<用户@例子.广告>").text.startswith("用户@xn--")


# ---------------------------------------------------------------- IDNA


def test_u_label_and_a_label_compare_equal() -> None:
    assert rcpt("<u@bücher.example>") == rcpt("<u@xn--bcher-kva.example>")
    assert rcpt("<u@BÜCHER.example>") == rcpt("<u@XN--BCHER-KVA.example>")


def test_idna2008_keeps_sharp_s() -> None:
    assert domain_to_ascii("straße.de") == "xn--strae-oqa.de"
    assert domain_to_ascii("xn--strae-oqa.de") == "xn--strae-oqa.de"


def test_ideographic_full_stop_separates_labels() -> None:
    assert domain_to_ascii("bücher\u3002example") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "domain",
    [
        "xn--abc-.example",  # hyphen at end
        "xn--zz.example",  # punycode that does not decode
        "xn--99999999.example",  # decodes out of the Unicode range
        "xn--bcher-kva-.example",
        "xn--ls8h.example",  # an emoji: a symbol, not IDNA2008-valid
        "xn--BCHER-KVA.example.xn--",
        "bü☃cher.example",
        "-bücher.example",
        "\u0301abc.example",
    ],
)
def test_invalid_idna_refused(domain: str) -> None:
    with pytest.raises(AddressError):
        domain_to_ascii(domain)


def test_a_label_must_be_normalised() -> None:
    # "u" + combining diaeresis is not NFC, so its A-label is not a valid one,
    # while the same text given as a U-label is normalised first.
    decomposed = "bu\u0308cher"
    with pytest.raises(AddressError):
        domain_to_ascii("xn--" + decomposed.encode("punycode").decode() + ".example")
    assert domain_to_ascii(decomposed + ".example") == "xn--bcher-kva.example"


def test_a_label_case_insensitive() -> None:
    assert domain_to_ascii("XN--BCHER-KVA.Example") == "xn--bcher-kva.example"


def test_domain_to_ascii_lowers_and_strips_dot() -> None:
    assert domain_to_ascii("Example.COM.") == "example.com"


# ---------------------------------------------------------------- address literals


def test_ipv4_literal() -> None:
    assert rcpt("<u@[127.0.0.1]>").domain == "[127.0.0.1]"


def test_ipv6_literal_canonicalised() -> None:
    assert rcpt("<u@[IPv6:::1]>").domain == "[IPv6:::1]"
    assert rcpt("<u@[ipv6:2001:DB8:0:0::1]>").domain == "[IPv6:2001:db8::1]"


@pytest.mark.parametrize(
    "literal",
    [
        "[256.1.1.1]",
        "[1.2.3]",
        "[01.2.3.4]",
        "[IPv6:1.2.3.4]",
        "[IPv6:::1%eth0]",
        "[IPv6:zz::1]",
        "[::1]",
        "[tag:anything]",
        "[]",
        "[1.2.3.4",
        "x[1.2.3.4]",
    ],
)
def test_bad_literals(literal: str) -> None:
    refused(f"<u@{literal}>")


# ---------------------------------------------------------------- source routes


def test_source_route_parsed_and_kept() -> None:
    addr = rcpt("<@a.example,@B.example:u@c.example>")
    assert addr == Address("u", "c.example", ("a.example", "b.example"))
    assert addr.text == "u@c.example"
    assert addr.path == "<@a.example,@b.example:u@c.example>"


@pytest.mark.parametrize(
    "path", ["<@a:u>", "<@a,b:u@c>", "<@a,:u@c>", "<@a u@c>", "<@:u@c>", "<@[1.2.3.4]:u@c>"]
)
def test_bad_source_routes(path: str) -> None:
    refused(path)


# ---------------------------------------------------------------- bare local parts


def test_bare_local_refused_by_default() -> None:
    refused("<user>")
    refused("<postmaster>")


def test_bare_postmaster_when_allowed() -> None:
    assert rcpt("<Postmaster>", allow_bare_postmaster=True) == Address("Postmaster")
    refused("<user>", allow_bare_postmaster=True)


def test_bare_local_when_allowed() -> None:
    addr = rcpt("<user>", allow_bare_local=True)
    assert addr == Address("user", "")
    assert addr.text == "user"
    assert str(addr) == "user"


def test_parse_address_bare_local_and_mailbox() -> None:
    assert parse_address("root") == Address("root")
    assert parse_address('"a b"@EXAMPLE.com') == Address("a b", "example.com")
    for bad in ["<u@d>", "", "@d", "u@", "a b@d"]:
        with pytest.raises(AddressError):
            parse_address(bad)


def test_parse_address_sender_reply() -> None:
    with pytest.raises(AddressError) as info:
        parse_address("a..b", for_sender=True)
    assert info.value.status == "5.1.7"


# ---------------------------------------------------------------- lengths


def test_local_part_length_limit() -> None:
    assert rcpt(f"<{'a' * MAX_LOCAL}@d>").local == "a" * MAX_LOCAL
    err = refused(f"<{'a' * (MAX_LOCAL + 1)}@d>")
    assert "64" in err.detail


def test_local_part_length_counts_octets() -> None:
    assert rcpt(f"<{'é' * 32}@d>").local == "é" * 32
    refused(f"<{'é' * 32}a@d>")


def _domain(length: int) -> str:
    labels: list[str] = []
    rest = length
    while rest > 51:
        labels.append("a" * 50)
        rest -= 51
    labels.append("b" * rest)
    name = ".".join(labels)
    assert len(name) == length
    return name


def test_domain_length_limit() -> None:
    assert domain_to_ascii(_domain(MAX_DOMAIN)) == _domain(MAX_DOMAIN)
    with pytest.raises(AddressError):
        domain_to_ascii(_domain(MAX_DOMAIN + 1))


def test_label_length_limit() -> None:
    assert domain_to_ascii("a" * 63 + ".x") == "a" * 63 + ".x"
    with pytest.raises(AddressError):
        domain_to_ascii("a" * 64 + ".x")


def test_path_length_limit() -> None:
    # "<" + 50 + "@" + domain + ">" == 256 octets exactly.
    local = "l" * 50
    domain = _domain(MAX_PATH - 3 - len(local))
    assert rcpt(f"<{local}@{domain}>").domain == domain
    longer = _domain(MAX_PATH - 2 - len(local))
    refused(f"<{local}@{longer}>")
    assert domain_to_ascii(longer) == longer  # the domain alone is fine; the path is not


def test_path_length_includes_source_route() -> None:
    local = "l" * 50
    domain = _domain(MAX_PATH - 3 - len(local))
    refused(f"<@r:{local}@{domain}>")


def test_parse_address_length_limit() -> None:
    local = "l" * 50
    assert parse_address(f"{local}@{_domain(MAX_PATH - 3 - len(local))}")
    with pytest.raises(AddressError):
        parse_address(f"{local}@{_domain(MAX_PATH - 2 - len(local))}")


# ---------------------------------------------------------------- quoting round trips


@pytest.mark.parametrize(
    ("local", "quoted"),
    [
        ("user", "user"),
        ("first.last", "first.last"),
        ("a+b=c/d", "a+b=c/d"),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        (".lead", '".lead"'),
        ("trail.", '"trail."'),
        ("a..b", '"a..b"'),
        ("a@b", '"a@b"'),
        ("x;touch pwn", '"x;touch pwn"'),
        ("jösé", "jösé"),
    ],
)
def test_quote_local_and_round_trip(local: str, quoted: str) -> None:
    assert quote_local(local) == quoted
    assert parse_address(f"{quoted}@d") == Address(local, "d")
    assert rcpt(Address(local, "d").path) == Address(local, "d")


def test_quote_local_refuses_unrepresentable() -> None:
    for bad in ["", "a\rb", "a\0"]:
        with pytest.raises(AddressError):
            quote_local(bad)


# ---------------------------------------------------------------- hostile local parts


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ('<"../../x"@d>', "/"),
        ('<"|cmd"@d>', "|"),
        ("<|cmd@d>", "|"),
        ("<-oX@d>", "-"),
        ('<"-oX"@d>', "-"),
        ("<a/b@d>", "/"),
        ('<"."@d>', "directory"),
        ('<".."@d>', "directory"),
        ('<"a..b"@d>', ".."),
        ('<":include:/etc/passwd"@d>', ":include:"),
        ('<":INCLUDE:x"@d>', ":include:"),
        ('<"a\\\\b"@d>', "backslash"),
    ],
)
def test_hostile_local_parts(path: str, word: str) -> None:
    reason = is_hostile_local(rcpt(path).local)
    assert reason is not None
    assert word in reason


def test_hostile_control_and_nul() -> None:
    assert "NUL" in (is_hostile_local("a\0b") or "")
    assert "U+000D" in (is_hostile_local("a\rb") or "")
    assert "U+007F" in (is_hostile_local("a\x7fb") or "")


@pytest.mark.parametrize("local", ["x;touch pwn", "user", "a.b", "a b", "$(id)", "~user", "a|b"])
def test_not_hostile(local: str) -> None:
    assert is_hostile_local(local) is None
    assert is_hostile_local(rcpt(Address(local, "d").path).local) is None


# ---------------------------------------------------------------- ESMTP parameters


def test_split_path_and_params() -> None:
    assert split_path_and_params('<"a b>c"@d> SIZE=10 BODY=8BITMIME') == (
        '<"a b>c"@d>',
        "SIZE=10 BODY=8BITMIME",
    )
    assert split_path_and_params("<>") == ("<>", "")
    assert split_path_and_params("u@d X") == ("u@d", "X")
    with pytest.raises(AddressError):
        split_path_and_params("<u@d>SIZE=1")
    with pytest.raises(AddressError) as info:
        split_path_and_params('<"u@d> x', for_sender=True)
    assert info.value.status == "5.1.7"


def test_parse_mail_params() -> None:
    params = parse_mail_params("size=100 BODY=8BITMIME smtputf8 ORCPT=rfc822;u+2Bx@d")
    assert params == {
        "SIZE": "100",
        "BODY": "8BITMIME",
        "SMTPUTF8": None,
        "ORCPT": "rfc822;u+2Bx@d",
    }
    assert parse_mail_params("") == {}
    assert parse_mail_params("A  B") == {"A": None, "B": None}


@pytest.mark.parametrize(
    "text", ["SIZE=", "=1", "-X=1", "SI_ZE=1", "A=b=c", "SIZE=1 size=2", "A=\x01", "K=\udcff"]
)
def test_bad_mail_params(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_mail_params(text)
    assert info.value.reply.startswith("501 5.5.4")


# ---------------------------------------------------------------- xtext and ORCPT


@pytest.mark.parametrize(
    "text", ["", "plain", "a+b=c", "sp ace", "tab\tx", "ü@bücher", "+2B", "~!"]
)
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


def test_xtext_examples() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode("u+2Bx+40d") == "u+x@d"
    assert xtext_decode("u+2bx") == "u+x"


@pytest.mark.parametrize("bad", ["a=b", "a b", "+2", "+ZZ", "+FF", "a\x7f", "é"])
def test_xtext_decode_refuses(bad: str) -> None:
    with pytest.raises(AddressError):
        xtext_decode(bad)


def test_parse_orcpt() -> None:
    assert parse_orcpt("rfc822;user+2Bext@example.com") == ("rfc822", "user+ext@example.com")
    assert parse_orcpt("RFC822;u@d") == ("rfc822", "u@d")
    assert parse_orcpt("utf-8;j\\x{F6}s\\x{E9}@d") == ("utf-8", "jösé@d")
    assert parse_orcpt("utf-8;jösé@d") == ("utf-8", "jösé@d")
    assert parse_orcpt("x-other;a+20b") == ("x-other", "a b")


@pytest.mark.parametrize(
    "bad",
    ["rfc822", "rfc822;", ";u@d", "rfc822;u+0Dx", "rfc822;a=b", "utf-8;a+b", "utf-8;\\x{110000}"],
)
def test_parse_orcpt_refuses(bad: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_orcpt(bad)
    assert info.value.reply == "501 5.5.4 Bad ORCPT parameter syntax"


# ---------------------------------------------------------------- recipient_delimiter


@pytest.mark.parametrize(
    ("local", "delims", "expected"),
    [
        ("user+ext", "+", ("user", "+", "ext")),
        ("user+a+b", "+", ("user", "+", "a+b")),
        ("user-a+b", "+-", ("user", "-", "a+b")),
        ("user+", "+", ("user", "+", "")),
        ("+ext", "+", ("+ext", None, None)),
        ("user", "+", ("user", None, None)),
        ("user+ext", "", ("user+ext", None, None)),
        ("Postmaster", "+", ("Postmaster", None, None)),
        ("MAILER-DAEMON", "-", ("MAILER-DAEMON", None, None)),
        ("owner-list", "-", ("owner", "-", "list")),
    ],
)
def test_split_extension(
    local: str, delims: str, expected: tuple[str, str | None, str | None]
) -> None:
    assert split_extension(local, delims) == expected


def test_split_extension_extra_reserved() -> None:
    assert split_extension("double-bounce", "-", reserved=("double-bounce",)) == (
        "double-bounce",
        None,
        None,
    )
