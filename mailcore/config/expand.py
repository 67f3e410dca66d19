"""``$name`` expansion with Postfix's main.cf semantics (mac_expand).

Owns: ``$name``, ``${name}``, ``$(name)``, ``$$``, ``${name?text}``, ``${name:text}``,
``${name?{text}:{text}}`` and the Postfix 3.x comparisons ``${{a} == {b} ? {x} : {y}}`` with
``== != < <= > >=`` and their ``level`` variants (``<level``) that compare compatibility levels.

Must not: read files or know which parameters exist. Names are resolved through a callback, so
the same code expands main.cf values, master.cf ``-o`` values and per-service names.

Invariants: expansion is recursive (a value's own ``$name`` references are expanded too) and a
reference cycle raises ``ExpansionError`` naming the chain, never recursing without bound.
An undefined name expands to the empty string, as in Postfix.
"""

from __future__ import annotations

from collections.abc import Callable

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MAX_DEPTH = 100

Lookup = Callable[[str], "str | None"]


class ExpansionError(ValueError):
    """A value cannot be expanded: reference loop, bad syntax, or bad comparison."""


def expand(value: str, lookup: Lookup) -> str:
    """Expand every ``$`` reference in ``value``; names resolve through ``lookup``."""
    return _Expander(lookup).text(value, ())


class _Expander:
    def __init__(self, lookup: Lookup):
        self._lookup = lookup

    def text(self, value: str, chain: tuple[str, ...]) -> str:
        out: list[str] = []
        i = 0
        while i < len(value):
            ch = value[i]
            if ch != "$":
                j = value.find("$", i)
                j = len(value) if j < 0 else j
                out.append(value[i:j])
                i = j
                continue
            piece, i = self._reference(value, i + 1, chain)
            out.append(piece)
        return "".join(out)

    def _reference(self, value: str, i: int, chain: tuple[str, ...]) -> tuple[str, int]:
        if i >= len(value):
            return "$", i
        ch = value[i]
        if ch == "$":
            return "$", i + 1
        if ch in "{(":
            close = "}" if ch == "{" else ")"
            end = _matching(value, i, ch, close)
            return self._braced(value[i + 1 : end], chain), end + 1
        j = i
        while j < len(value) and value[j] in _NAME_CHARS:
            j += 1
        if j == i:
            return "$", i  # a '$' before no name stays literal, as Postfix leaves it
        return self.name(value[i:j], chain), j

    def name(self, name: str, chain: tuple[str, ...]) -> str:
        if name in chain:
            raise ExpansionError("parameter loop: " + " -> ".join((*chain, name)))
        if len(chain) >= _MAX_DEPTH:
            raise ExpansionError("unreasonable macro call nesting: " + name)
        raw = self._lookup(name)
        return "" if raw is None else self.text(raw, (*chain, name))

    def _braced(self, inner: str, chain: tuple[str, ...]) -> str:
        if inner.startswith("{"):
            return self._comparison(inner, chain)
        j = 0
        while j < len(inner) and inner[j] in _NAME_CHARS:
            j += 1
        name, rest = inner[:j], inner[j:]
        if not name:
            raise ExpansionError(f"bad macro name syntax: ${{{inner}}}")
        if not rest:
            return self.name(name, chain)
        op, text = rest[0], rest[1:]
        if op not in "?:":
            raise ExpansionError(f"bad macro syntax: ${{{inner}}}")
        is_set = self.name(name, chain) != ""
        if text.startswith("{") and op == "?":
            when_set, when_unset = _ternary_branches(text)
            return self.text(when_set if is_set else when_unset, chain)
        wanted = is_set if op == "?" else not is_set
        return self.text(_unbrace(text), chain) if wanted else ""

    def _comparison(self, inner: str, chain: tuple[str, ...]) -> str:
        left_end = _matching(inner, 0, "{", "}")
        left = self.text(inner[1:left_end], chain)
        rest = inner[left_end + 1 :].lstrip()
        op = ""
        while rest and rest[0] not in "{ ":
            op, rest = op + rest[0], rest[1:]
        rest = rest.lstrip()
        if not rest.startswith("{"):
            raise ExpansionError(f"bad comparison syntax: ${{{inner}}}")
        right_end = _matching(rest, 0, "{", "}")
        right = self.text(rest[1:right_end], chain)
        rest = rest[right_end + 1 :].lstrip()
        if not rest.startswith("?"):
            raise ExpansionError(f"missing '?' in comparison: ${{{inner}}}")
        when_true, when_false = _ternary_branches(rest[1:].lstrip())
        return self.text(when_true if compare(left, op, right) else when_false, chain)


def compare(left: str, op: str, right: str) -> bool:
    """Postfix's comparison operators; ``level`` ops compare dotted compatibility levels."""
    if op in ("==", "!="):
        return (left == right) == (op == "==")
    base, _, kind = op.partition("level")
    if base not in ("<", "<=", ">", ">=") or kind:
        raise ExpansionError(f"unknown operator: {op!r}")
    convert = _level if op.endswith("level") else _number
    a, b = convert(left), convert(right)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[base]


def _level(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise ExpansionError(f"bad compatibility level: {text!r}") from None


def _number(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ExpansionError(f"not a number: {text!r}") from None


def _matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
    raise ExpansionError(f"missing '{close_ch}' in {text[start:]!r}")


def _ternary_branches(text: str) -> tuple[str, str]:
    """Split ``{a}:{b}`` (spaces allowed around ``:``) into its two texts."""
    first_end = _matching(text, 0, "{", "}")
    rest = text[first_end + 1 :].strip()
    if not rest.startswith(":"):
        raise ExpansionError(f"missing ':' in {text!r}")
    rest = rest[1:].strip()
    second_end = _matching(rest, 0, "{", "}")
    if rest[second_end + 1 :].strip():
        raise ExpansionError(f"unexpected text after {rest[: second_end + 1]!r}")
    return text[1:first_end], rest[1:second_end]


def _unbrace(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        return stripped[1:-1]
    return text
