"""Local parts and the ``Address`` value: character classes, Dot-string/Quoted-string, policy.

Owns: the ``Address`` record, the characters an envelope address may hold (controls, surrogates,
SMTPUTF8), reading and quoting RFC 5321 local parts, and the local-part policy helpers
(recipient_delimiter split, hostile local parts refused before delivery).
Must not: parse domains (idna.py) or whole paths (path.py), do I/O, or decide routing.

Invariants: ``quote_local`` output parses back through ``_scan_local`` to the same local part;
a decoded local part is never empty and longer than ``MAX_LOCAL`` octets is refused.

Reads no main.cf parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.address.errors import AddressError, _Bad

ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~"
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1, octets

_RESERVED_LOCAL = ("postmaster", "mailer-daemon")


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
