"""The aliases(5) source syntax, as read by ``mailcore alias`` (postalias).

Owns: parsing ``name: value, value`` lines (quoted names, continuation lines, comments) into
key/value entries for the indexed format, and splitting an alias value into its items
(``parse_alias_values``) for local delivery.
Must not: interpret the items (``|command``, ``/file``, ``:include:``); local delivery does.
Invariants: keys are folded to lower case unless the caller asks otherwise; a duplicate name
warns and the first entry wins (the last with ``replace``); values are stored as written.
"""

from __future__ import annotations

from mailcore.tables.base import Warn, log_warning, logical_lines


def _unquote(text: str) -> str:
    """Remove enclosing double quotes and backslash escapes inside them."""
    inner = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def _closing_quote(text: str, start: int) -> int:
    """Index of the double quote that closes the one at ``start``, or -1."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def split_alias_line(line: str) -> tuple[str, str] | None:
    """(name, value) of one logical alias line, or None when there is no ``name:``."""
    if line.startswith('"'):
        end = _closing_quote(line, 0)
        if end < 0:
            return None
        name = _unquote(line[: end + 1])
        rest = line[end + 1 :].lstrip()
        if not rest.startswith(":"):
            return None
        return name, rest[1:].strip()
    name, sep, value = line.partition(":")
    if not sep:
        return None
    return name.strip(), value.strip()


def parse_alias_source(
    text: str,
    filename: str,
    *,
    fold: bool = True,
    replace: bool = False,
    warn: Warn = log_warning,
) -> dict[str, str]:
    """Parse an aliases(5) file into an ordered name->value dict."""
    entries: dict[str, str] = {}
    for number, line in logical_lines(text):
        pair = split_alias_line(line)
        if pair is None or not pair[0]:
            warn(f"{filename}, line {number}: need name:value pair")
            continue
        name, value = pair
        if not value:
            warn(f'{filename}, line {number}: no value for alias "{name}"')
            continue
        key = name.lower() if fold else name
        if key in entries:
            warn(f'{filename}, line {number}: duplicate entry: "{key}"')
            if not replace:
                continue
        entries[key] = value
    return entries


def parse_alias_values(text: str) -> list[str]:
    """Split an alias value at commas outside double quotes; a wholly quoted item is unquoted.

    ``a, "|cmd arg", /file, :include:/path`` gives ``["a", "|cmd arg", "/file",
    ":include:/path"]``; ``"john doe"@example.com`` keeps its quotes.
    """
    items: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            end = _closing_quote(text, i)
            end = len(text) - 1 if end < 0 else end
            cur.append(text[i : end + 1])
            i = end + 1
            continue
        if c == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    items.append("".join(cur))
    out: list[str] = []
    for item in items:
        s = item.strip()
        if len(s) >= 2 and s[0] == '"' and _closing_quote(s, 0) == len(s) - 1:
            s = _unquote(s)
        if s:
            out.append(s)
    return out
