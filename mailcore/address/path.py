"""RFC 5321 paths: the ``<path>`` of MAIL FROM / RCPT TO and bare sendmail addresses.

Owns: the path grammar (angle brackets, the empty path, source routes, mailboxes), the
strict_rfc821_envelopes-like relaxations the caller chooses, and splitting a command argument
into path and ESMTP parameter text.
Must not: do I/O, look anything up, or apply routing policy (source routes are kept as received).

Invariants: a returned ``Address`` has a domain unless the caller allowed a bare local part (or
bare postmaster); a bracketed path is at most ``MAX_PATH`` octets including "<" and ">".

Reads no main.cf parameter.
"""

from __future__ import annotations

from mailcore.address.errors import SYNTAX_RCPT, SYNTAX_SENDER, AddressError, _Bad, _public
from mailcore.address.idna import _domain_ascii, _parse_domain_part
from mailcore.address.local import Address, _check_chars, _scan_local

MAX_PATH = 256  # RFC 5321 4.5.3.1.3, octets including "<" and ">"


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

