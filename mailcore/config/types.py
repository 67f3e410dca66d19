"""Typed views of parameter values: booleans, times, sizes, integers, lists.

Owns: Postfix's value grammars — ``yes``/``no``; times with an optional unit
(``s m h d w``); whole-number sizes; lists separated by commas and/or white space in which
``{ … }`` groups text that holds separators (``inline:{ a=b, {c = d e} }``).

Must not: look values up or expand them; callers pass already-expanded text.
"""

from __future__ import annotations

_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class BadValue(ValueError):
    """A value does not fit the parameter's type; the message says what was expected."""


def to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "yes":
        return True
    if lowered == "no":
        return False
    raise BadValue(f"bad boolean value {text!r} (expected yes or no)")


def to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadValue(f"bad numerical value {text!r} (expected a whole number)") from None


def to_time(text: str, default_unit: str = "s") -> float:
    """Seconds from ``300s``, ``5d``, ``1h`` or a bare number in ``default_unit``."""
    stripped = text.strip()
    unit = default_unit
    if stripped and stripped[-1].lower() in _TIME_UNITS:
        unit, stripped = stripped[-1].lower(), stripped[:-1]
    try:
        number = float(stripped)
    except ValueError:
        raise BadValue(
            f"bad time value {text!r} (expected a number with an optional unit s, m, h, d or w)"
        ) from None
    if number < 0:
        raise BadValue(f"bad time value {text!r} (must not be negative)")
    return number * _TIME_UNITS[unit]


def to_size(text: str) -> int:
    value = to_int(text)
    if value < 0:
        raise BadValue(f"bad size value {text!r} (must not be negative)")
    return value


def split_list(text: str) -> tuple[str, ...]:
    """Split on commas and white space, keeping ``{ … }`` groups (braces included) whole."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if depth == 0 and (ch == "," or ch.isspace()):
            if current:
                items.append("".join(current))
                current = []
            continue
        current.append(ch)
    if depth:
        raise BadValue(f"missing '}}' in {text!r}")
    if current:
        items.append("".join(current))
    return tuple(items)
