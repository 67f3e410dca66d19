"""ESMTP parameters of MAIL FROM / RCPT TO: the keyword list, xtext (RFC 3461) and ORCPT.

Owns: splitting ``KEY=VALUE KEY ...`` into a mapping, xtext decoding and encoding, and the ORCPT
value (``addr-type;xtext``, with RFC 6533 utf-8-addr-xtext for addr-type utf-8).
Must not: interpret parameters beyond their syntax (smtpd decides what SIZE, NOTIFY ... mean).

Invariants: keys are upper-cased and unique; values are returned undecoded by
``parse_mail_params``; ``xtext_decode(xtext_encode(s)) == s`` for every string ``s``.

Reads no main.cf parameter.
"""

from __future__ import annotations

import re

from mailcore.address.errors import ORCPT_SYNTAX, PARAM_SYNTAX, AddressError
from mailcore.address.local import _is_control

_ESMTP_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}\Z")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


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

