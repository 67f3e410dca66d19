"""RFC 5322 address lists and the validation every sendmail address goes through.

Owns: ``parse_address_list`` (the addr-specs of a To:-style list: display names, comments,
groups and obs-routes dropped; command-line arguments are parsed this way too, as Postfix
does), ``validate_address``, and the -f / argument helpers built on them.
Must not: append anything to bare local parts (cleanup's rewriting does that), raise
SendmailExit (callers choose the exit status), or do I/O.
Invariants: every address returned by validate_address, sender_from_option and
recipients_from_argument went through mailcore.address.parse_address and
is_hostile_local; broken syntax is AddressError. Reads no parameter.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailcore.address import AddressError, is_hostile_local, parse_address

_SPECIALS = "<>@,;:.\\\"[]()"


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, text) tokens; comments and white space are dropped. kinds: atom, quoted,
    literal, special."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif ch in "\"[":
            close = '"' if ch == '"' else "]"
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                what = "quoted string" if ch == '"' else "domain literal"
                raise AddressError(f"unterminated {what}")
            yield ("quoted" if ch == '"' else "literal"), text[i : j + 1]
            i = j + 1
        elif ch in _SPECIALS:
            yield "special", ch
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            yield "atom", text[i:j]
            i = j


def _render(tokens: list[tuple[str, str]]) -> str:
    # Adjacent words keep a space between them, so a phrase without an address fails
    # validation instead of turning into a glued-together local part.
    out = ""
    prev_word = False
    for kind, text in tokens:
        word = kind != "special"
        if word and prev_word:
            out += " "
        out += text
        prev_word = word
    return out


def _strip_route(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # obs-route "<@a,@b:user@c>": keep what follows the colon.
    if tokens[:1] == [("special", "@")] and ("special", ":") in tokens:
        return tokens[tokens.index(("special", ":")) + 1 :]
    return tokens


def parse_address_list(text: str) -> list[str]:
    """The addr-specs of an RFC 5322 address list (display names, comments, groups and
    routes dropped), in external form; AddressError on broken syntax."""
    found: list[str] = []
    current: list[tuple[str, str]] = []
    angle: list[tuple[str, str]] | None = None
    used_angle = False
    for kind, tok in _tokens(text):
        if angle is not None:
            if (kind, tok) == ("special", ">"):
                if angle:
                    found.append(_render(_strip_route(angle)))
                angle, used_angle, current = None, True, []
            else:
                angle.append((kind, tok))
        elif (kind, tok) == ("special", "<"):
            angle = []
        elif kind == "special" and tok in ",;":
            if current and not used_angle:
                found.append(_render(current))
            current, used_angle = [], False
        elif (kind, tok) == ("special", ":") and not used_angle:
            current = []  # a group's display name
        elif not used_angle:
            current.append((kind, tok))
    if angle is not None:
        raise AddressError("missing '>'")
    if current and not used_angle:
        found.append(_render(current))
    return found


def validate_address(text: str, *, for_sender: bool = False) -> str:
    """The canonical form of one address; AddressError when refused."""
    address = parse_address(text, smtputf8=True, for_sender=for_sender)
    hostile = is_hostile_local(address.local)
    if hostile:
        raise AddressError(hostile)
    return address.text


def sender_from_option(value: str) -> str:
    """-f value: the first address of an RFC 5322 list, "" for the null sender."""
    if value.strip() in ("", "<>"):
        return ""
    addresses = parse_address_list(value)
    if not addresses:
        # "<>" inside a phrase, e.g. -f 'Nobody <>'
        return ""
    return validate_address(addresses[0], for_sender=True)


def recipients_from_argument(value: str) -> list[str]:
    addresses = parse_address_list(value)
    if not addresses:
        raise AddressError("no address found")
    return [validate_address(a) for a in addresses]
