"""Domains of envelope addresses: IDNA U-label/A-label handling and address literals.

Owns: turning a domain part into its canonical form — lower-case LDH labels, U-labels converted
to validated A-labels (UTS 46 non-transitional, approximated), one trailing dot stripped — and
address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]") into canonical text.
Must not: look names up (no DNS), do I/O, or parse local parts or paths.

Invariants: a returned domain is ASCII, lower-case, without a trailing dot, at most
``MAX_DOMAIN`` octets, each label at most ``MAX_LABEL`` octets; an A-label is accepted only when
it decodes to a normalized U-label that encodes back to it.

Reads no main.cf parameter.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from mailcore.address.errors import _Bad, _public
from mailcore.address.local import _check_chars

MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2, octets
MAX_LABEL = 63

_LDH_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
_DOT_LIKE = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


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

