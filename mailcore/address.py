"""Envelope address syntax: RFC 5321 paths, RFC 6531 SMTPUTF8, IDNA, xtext, extensions.

Owns: turning the text of a MAIL FROM / RCPT TO path, an ESMTP parameter list, a sendmail
command-line address or an ORCPT value into typed values, and the reverse (quoting).
Must not: do I/O, look anything up, or decide routing (percent hack, bang paths and source
routes are kept as received; rewrite.py and restrictions.py own their policy).

Invariants of every ``Address`` this module returns:
- ``local`` is the decoded local part (no quotes, no quoted-pairs), never empty, free of
  control characters (C0, DEL, C1) and surrogates;
- ``domain`` is "" (bare local part), a lower-case ASCII domain whose labels are LDH or
  validated A-labels (U-labels are converted), without a trailing dot, or an address
  literal in canonical form ("[192.0.2.1]", "[IPv6:2001:db8::1]");
- ``Address.text`` parses back to an equal Address.

Reads no main.cf parameter itself: the caller passes strict_rfc821_envelopes-like choices
(allow_bare_local, allow_unbracketed) and recipient_delimiter.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~"
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1, octets
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2, octets
MAX_PATH = 256  # RFC 5321 4.5.3.1.3, octets including "<" and ">"
MAX_LABEL = 63

SYNTAX_RCPT = (501, "5.1.3", "Bad recipient address syntax")
SYNTAX_SENDER = (501, "5.1.7", "Bad sender address syntax")
NEED_SMTPUTF8 = (553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
PARAM_SYNTAX = (501, "5.5.4", "Syntax error in parameters or arguments")
ORCPT_SYNTAX = (501, "5.5.4", "Bad ORCPT parameter syntax")

_LDH_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
_ESMTP_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}\Z")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_DOT_LIKE = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_RESERVED_LOCAL = ("postmaster", "mailer-daemon")


class AddressError(ValueError):
    """An address or parameter was refused.

    ``code``/``status``/``text`` form the SMTP reply the client sees (Postfix's wording);
    ``detail`` says exactly what was wrong, for the log and for sendmail's stderr.
    """

    def __init__(self, detail: str, reply: tuple[int, str, str] = SYNTAX_RCPT):
        super().__init__(detail)
        self.detail = detail
        self.code, self.status, self.text = reply

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def utf8_required(self) -> bool:
        return (self.code, self.status, self.text) == NEED_SMTPUTF8

    def __str__(self) -> str:
        return self.detail


class _Bad(Exception):
    """Internal: a syntax problem, turned into AddressError with the caller's reply."""

    def __init__(self, detail: str, *, utf8: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.utf8 = utf8


def _public(err: _Bad, for_sender: bool) -> AddressError:
    if err.utf8:
        return AddressError(err.detail, NEED_SMTPUTF8)
    return AddressError(err.detail, SYNTAX_SENDER if for_sender else SYNTAX_RCPT)


@dataclass(frozen=True)
class Address:
    """An envelope mailbox; build it with parse_path/parse_address, not by hand."""

    local: str
    domain: str = ""
    route: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Canonical external form without the source route: quoted only when needed."""
        local = quote_local(self.local)
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def path(self) -> str:
        """The RFC 5321 path, source route included: ``<@a,@b:u@c>``."""
        if self.route:
            return "<" + ",".join("@" + d for d in self.route) + ":" + self.text + ">"
        return "<" + self.text + ">"

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------- characters


def _is_control(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or 0x7F <= o <= 0x9F


def _check_chars(text: str, smtputf8: bool) -> None:
    """Refuse controls and lone surrogates anywhere; non-ASCII only with SMTPUTF8."""
    for ch in text:
        if _is_control(ch):
            raise _Bad(f"control character U+{ord(ch):04X} in address")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise _Bad("address is not valid UTF-8")
        if ch in "\u2028\u2029":
            raise _Bad("Unicode line separator in address")
    if not smtputf8 and not text.isascii():
        raise _Bad("non-ASCII address without SMTPUTF8", utf8=True)


def _is_atext(ch: str) -> bool:
    return (ch.isascii() and (ch.isalnum() or ch in ATEXT_SPECIALS)) or ord(ch) > 0x9F


def _is_dot_string(local: str) -> bool:
    atoms = local.split(".")
    return all(atom and all(_is_atext(c) for c in atom) for atom in atoms)


# ---------------------------------------------------------------- local part


def quote_local(local: str) -> str:
    """The RFC 5321 form of a local part: a Dot-string as is, else a Quoted-string."""
    if not local:
        raise AddressError("empty local part")
    for ch in local:
        if _is_control(ch) or 0xD800 <= ord(ch) <= 0xDFFF:
            raise AddressError(f"control character U+{ord(ch):04X} cannot be quoted")
    if _is_dot_string(local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan_local(text: str, i: int) -> tuple[str, int]:
    """Read a Dot-string or Quoted-string at text[i]; return (decoded local, end index)."""
    if i < len(text) and text[i] == '"':
        out: list[str] = []
        j = i + 1
        while j < len(text) and text[j] != '"':
            if text[j] == "\\":
                j += 1
                if j >= len(text):
                    raise _Bad("quoted-pair at end of address")
            out.append(text[j])
            j += 1
        if j >= len(text):
            raise _Bad("unterminated quoted string")
        if not out:
            # "" would canonicalise to "@domain", the key form of domain-wide table entries.
            raise _Bad("empty quoted local part")
        end = j + 1
    else:
        end = i
        while end < len(text) and (_is_atext(text[end]) or text[end] == "."):
            end += 1
        out = list(text[i:end])
        if not out:
            raise _Bad("missing local part")
        if not _is_dot_string(text[i:end]):
            raise _Bad("local part has an empty atom (leading, trailing or double dot)")
    if len(text[i:end].encode()) > MAX_LOCAL:
        raise _Bad(f"local part longer than {MAX_LOCAL} octets")
    return "".join(out), end


# ---------------------------------------------------------------- domains


def _ulabel_ok(label: str) -> bool:
    """IDNA2008-like U-label check (letters, marks, digits, hyphen); no bidi/context rules."""
    if label[0] == "-" or label[-1] == "-" or unicodedata.category(label[0]).startswith("M"):
        return False
    for ch in label:
        if ch.isascii():
            if not (ch.isalnum() or ch == "-") or ch.isupper():
                return False
        elif unicodedata.category(ch) not in ("Ll", "Lo", "Lm", "Mn", "Mc", "Nd"):
            return False
    return True


def _normalize_ulabel(label: str) -> str:
    # UTS 46 non-transitional, approximated: compatibility-fold, lower-case (keeping ß), NFC.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", label).lower())


def _label_to_ascii(label: str) -> str:
    if not label:
        raise _Bad("empty domain label")
    if label.isascii():
        low = label.lower()
        if not _LDH_LABEL.match(low):
            raise _Bad(f"invalid domain label {label!r}")
        if low.startswith("xn--"):
            _check_alabel(low)
        elif low[2:4] == "--":
            raise _Bad(f"reserved label form {label!r}")
        if len(low) > MAX_LABEL:
            raise _Bad(f"domain label longer than {MAX_LABEL} octets")
        return low
    ulabel = _normalize_ulabel(label)
    if not _ulabel_ok(ulabel):
        raise _Bad(f"invalid internationalized label {label!r}")
    alabel = "xn--" + ulabel.encode("punycode").decode("ascii")
    if len(alabel) > MAX_LABEL:
        raise _Bad(f"domain label longer than {MAX_LABEL} octets")
    return alabel


def _check_alabel(alabel: str) -> None:
    """An A-label must decode to a valid, normalized U-label that encodes back to it."""
    try:
        ulabel = alabel[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError) as exc:
        raise _Bad(f"invalid A-label {alabel!r}") from exc
    if (
        not ulabel
        or ulabel.isascii()
        or ulabel != _normalize_ulabel(ulabel)
        or not _ulabel_ok(ulabel)
        or "xn--" + ulabel.encode("punycode").decode("ascii") != alabel
    ):
        raise _Bad(f"invalid A-label {alabel!r}")


def _domain_ascii(domain: str) -> str:
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]  # Postfix's resolver strips one trailing dot, not "..".
    if not domain:
        raise _Bad("missing domain")
    if len(domain.encode()) > MAX_DOMAIN:
        raise _Bad(f"domain longer than {MAX_DOMAIN} octets")
    result = ".".join(_label_to_ascii(label) for label in domain.translate(_DOT_LIKE).split("."))
    if len(result) > MAX_DOMAIN:
        raise _Bad(f"domain longer than {MAX_DOMAIN} octets")
    return result


def domain_to_ascii(domain: str) -> str:
    """IDNA U-labels to A-labels, lower-cased, trailing dot stripped; AddressError if invalid."""
    try:
        _check_chars(domain, smtputf8=True)
        return _domain_ascii(domain)
    except _Bad as err:
        raise _public(err, for_sender=False) from None


def _address_literal(text: str) -> str:
    """Validate "[...]" and return its canonical form."""
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        value = inner[5:]
        if "%" in value:
            raise _Bad("IPv6 zone identifier in address literal")
        try:
            return f"[IPv6:{ipaddress.IPv6Address(value).compressed}]"
        except ValueError as exc:
            raise _Bad(f"invalid IPv6 address literal {text!r}") from exc
    try:
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError as exc:
        raise _Bad(f"invalid address literal {text!r}") from exc


def _parse_domain_part(text: str) -> str:
    if text.startswith("[") and text.endswith("]") and len(text) > 2:
        return _address_literal(text)
    if "[" in text or "]" in text:
        raise _Bad("malformed address literal")
    return _domain_ascii(text)


# ---------------------------------------------------------------- mailboxes and paths


def _parse_mailbox(text: str, *, allow_bare: bool) -> Address:
    local, end = _scan_local(text, 0)
    if end == len(text):
        if not allow_bare:
            raise _Bad("address has no domain")
        return Address(local)
    if text[end] != "@":
        raise _Bad(f"unexpected {text[end]!r} after local part")
    return Address(local, _parse_domain_part(text[end + 1 :]))


def _parse_route(text: str) -> tuple[tuple[str, ...], str]:
    """Split "@a,@b:mailbox" into (("a", "b"), "mailbox")."""
    head, sep, rest = text.partition(":")
    if not sep:
        raise _Bad("source route without ':'")
    hops = head.split(",")
    if any(not hop.startswith("@") for hop in hops):
        raise _Bad("malformed source route")
    return tuple(_domain_ascii(hop[1:]) for hop in hops), rest


def parse_path(
    text: str,
    *,
    allow_empty: bool,
    smtputf8: bool,
    for_sender: bool = False,
    allow_bare_postmaster: bool = False,
    allow_bare_local: bool = False,
    allow_unbracketed: bool = False,
) -> Address | None:
    """Parse the ``<path>`` of MAIL FROM / RCPT TO; ``<>`` gives None when allow_empty.

    allow_bare_postmaster: accept ``<postmaster>`` (RFC 5321 4.5.1, for RCPT).
    allow_bare_local: accept any ``<user>`` (Postfix with strict_rfc821_envelopes=no).
    allow_unbracketed: accept ``user@domain`` without <> (strict_rfc821_envelopes=no).
    """
    try:
        return _parse_path(
            text,
            allow_empty,
            smtputf8,
            allow_bare_postmaster,
            allow_bare_local,
            allow_unbracketed,
        )
    except _Bad as err:
        raise _public(err, for_sender) from None


def _parse_path(
    text: str,
    allow_empty: bool,
    smtputf8: bool,
    bare_postmaster: bool,
    bare_local: bool,
    unbracketed: bool,
) -> Address | None:
    _check_chars(text, smtputf8)
    if text.startswith("<") and text.endswith(">") and len(text) >= 2:
        inner = text[1:-1]
        if len(text.encode()) > MAX_PATH:
            raise _Bad(f"path longer than {MAX_PATH} octets")
    elif unbracketed and text and not text.startswith("<") and not text.endswith(">"):
        inner = text
        if len(text.encode()) + 2 > MAX_PATH:
            raise _Bad(f"path longer than {MAX_PATH} octets")
    else:
        raise _Bad("path not enclosed in <>")
    if not inner:
        if allow_empty:
            return None
        raise _Bad("null address not allowed here")
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        route, inner = _parse_route(inner)
    mailbox = _parse_mailbox(inner, allow_bare=not route)
    if not mailbox.domain and not (
        bare_local or (bare_postmaster and mailbox.local.lower() == "postmaster")
    ):
        raise _Bad("address has no domain")
    return Address(mailbox.local, mailbox.domain, route)


def parse_address(text: str, *, smtputf8: bool = True, for_sender: bool = False) -> Address:
    """Parse a bare mailbox (sendmail recipients, -f): ``user`` or ``user@domain``, no <>."""
    try:
        _check_chars(text, smtputf8)
        if len(text.encode()) + 2 > MAX_PATH:
            raise _Bad(f"address longer than {MAX_PATH - 2} octets")
        return _parse_mailbox(text, allow_bare=True)
    except _Bad as err:
        raise _public(err, for_sender) from None


def split_path_and_params(text: str, *, for_sender: bool = False) -> tuple[str, str]:
    """Split ``<path> KEY=V ...`` at the end of the path; quoted spaces stay in the path."""
    reply = SYNTAX_SENDER if for_sender else SYNTAX_RCPT
    if not text.startswith("<"):
        path, _, rest = text.partition(" ")
        return path, rest.strip(" ")
    quoted = False
    i = 1
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            rest = text[i + 1 :]
            if rest and not rest.startswith(" "):
                raise AddressError("junk after path", reply)
            return text[: i + 1], rest.strip(" ")
        i += 1
    raise AddressError("path not closed with '>'", reply)


# ---------------------------------------------------------------- ESMTP parameters


def parse_mail_params(text: str) -> dict[str, str | None]:
    """``KEY=VALUE KEY ...`` after the path; keys upper-cased, values (xtext) untouched."""
    params: dict[str, str | None] = {}
    for word in text.split(" "):
        if not word:
            continue  # Postfix's tokenizer tolerates runs of spaces.
        key, sep, value = word.partition("=")
        if not _ESMTP_KEY.match(key):
            raise AddressError(f"bad ESMTP keyword {key!r}", PARAM_SYNTAX)
        if sep and (not value or any(_is_control(c) or c == "=" for c in value)):
            raise AddressError(f"bad value for ESMTP parameter {key}", PARAM_SYNTAX)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise AddressError(f"invalid UTF-8 in ESMTP parameter {key}", PARAM_SYNTAX)
        if key.upper() in params:
            raise AddressError(f"duplicate ESMTP parameter {key.upper()}", PARAM_SYNTAX)
        params[key.upper()] = value if sep else None
    return params


# ---------------------------------------------------------------- xtext and ORCPT


def xtext_decode(s: str) -> str:
    """RFC 3461 xtext to text; the decoded octets must be UTF-8."""
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "+":
            if not _HEX2.match(s[i + 1 : i + 3]):
                raise AddressError("bad xtext hex escape", PARAM_SYNTAX)
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
            continue
        if not ("!" <= ch <= "~") or ch == "=":
            raise AddressError(f"character {ch!r} not allowed in xtext", PARAM_SYNTAX)
        out.append(ord(ch))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AddressError("xtext does not decode to UTF-8", PARAM_SYNTAX) from exc


def xtext_encode(s: str) -> str:
    """Text to RFC 3461 xtext: "+", "=", and octets outside 33..126 become +HH."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in s.encode()
    )


def _utf8_addr_decode(s: str) -> str:
    """RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext: \\x{HEX} escapes, UTF-8 as is."""
    out: list[str] = []
    i = 0
    while i < len(s):
        m = _UTF8_ESCAPE.match(s, i)
        if m:
            if int(m.group(1), 16) > 0x10FFFF:
                raise AddressError("code point out of range", ORCPT_SYNTAX)
            out.append(chr(int(m.group(1), 16)))
            i = m.end()
        elif s[i] in "\\+=" or not (s[i] > " " and s[i] != "\x7f"):
            raise AddressError("bad utf-8-addr-xtext", ORCPT_SYNTAX)
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_orcpt(value: str) -> tuple[str, str]:
    """ORCPT=addr-type;xtext -> (lower-cased addr-type, decoded original recipient)."""
    addr_type, sep, encoded = value.partition(";")
    if not sep or not encoded or not _ESMTP_KEY.match(addr_type):
        raise AddressError("ORCPT is not addr-type;address", ORCPT_SYNTAX)
    addr_type = addr_type.lower()
    try:
        decoded = _utf8_addr_decode(encoded) if addr_type == "utf-8" else xtext_decode(encoded)
    except AddressError as err:
        raise AddressError(err.detail, ORCPT_SYNTAX) from None
    if any(_is_control(c) or 0xD800 <= ord(c) <= 0xDFFF for c in decoded):
        raise AddressError("control character in ORCPT address", ORCPT_SYNTAX)
    return addr_type, decoded


# ---------------------------------------------------------------- local-part policy


def split_extension(
    local: str, delimiters: str, *, reserved: tuple[str, ...] = _RESERVED_LOCAL
) -> tuple[str, str | None, str | None]:
    """Postfix recipient_delimiter split: (user, delimiter, extension) or (local, None, None).

    Splits at the first occurrence of any delimiter character; never splits the reserved
    names (postmaster, MAILER-DAEMON; pass the double_bounce_sender too) nor when the user
    part would be empty. owner-/-request (owner_request_special) is the caller's choice.
    """
    if not delimiters or local.lower() in (r.lower() for r in reserved):
        return local, None, None
    for i, ch in enumerate(local):
        if ch in delimiters:
            if i == 0:
                break
            return local[:i], ch, local[i + 1 :]
    return local, None, None


def is_hostile_local(local: str) -> str | None:
    """Why a local part must be refused before it reaches delivery agents, or None.

    Shell metacharacters (';', '&', '`', spaces) are not hostile here: no mailcore agent
    passes an address through a shell; pipe(8) gets argv, local(8) quotes for $RECIPIENT.
    """
    for ch in local:
        if ch == "\0":
            return "NUL character in local part"
        if _is_control(ch):
            return f"control character U+{ord(ch):04X} in local part"
    if local in (".", ".."):
        return "local part is a directory name"
    if local.startswith("|"):
        return "local part starts with '|' (pipe)"
    if local.startswith("-"):
        return "local part starts with '-' (option)"
    if local.lower().startswith(":include:"):
        return "local part starts with ':include:'"
    if "/" in local:
        return "local part contains '/' (path)"
    if ".." in local:
        return "local part contains '..'"
    if "\\" in local:
        return "local part contains a backslash"
    return None
