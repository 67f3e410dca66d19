"""main.cf syntax: reading logical lines and editing the file in place.

Owns: Postfix's main.cf grammar — ``name = value``, continuation lines that start with white
space, ``#`` comment lines and blank lines (skipped, also between continuation lines), and the
``postconf -e`` / ``postconf -#`` edits that keep every other line, comment and order intact.

Must not: expand values or know parameter types (see expand.py and types.py).

Invariants: a ``#`` only starts a comment at the beginning of a line (after optional white
space); elsewhere it is part of the value, as in Postfix. The last setting of a name wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mailcore.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class Setting:
    """One ``name = value`` entry with the lines it spans (1-based, inclusive)."""

    name: str
    value: str
    first_line: int
    last_line: int


def _is_skipped(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def logical_lines(text: str, filename: str) -> list[tuple[int, int, str]]:
    """Join continuation lines: ``(first_line, last_line, joined_text)`` for each entry."""
    entries: list[tuple[int, int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if _is_skipped(line):
            continue
        if line[0].isspace():
            if not entries:
                raise ConfigError(
                    "logical line must not start with white space", file=filename, line=number
                )
            first, _, joined = entries[-1]
            entries[-1] = (first, number, joined + " " + line.strip())
        else:
            entries.append((number, number, line.rstrip()))
    return entries


def parse_main_cf(text: str, filename: str) -> list[Setting]:
    """Parse main.cf text; raise ConfigError naming the file and line of the first bad entry."""
    settings: list[Setting] = []
    for first, last, joined in logical_lines(text, filename):
        name, sep, value = joined.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(
                f"missing '=' after parameter name: \"{_clip(joined)}\"", file=filename, line=first
            )
        if not _NAME.match(name):
            raise ConfigError(
                f"bad parameter name: \"{_clip(name)}\" (expected letters, digits and '_')",
                file=filename,
                line=first,
            )
        settings.append(Setting(name, value.strip(), first, last))
    return settings


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width] + "..."


def edit_main_cf(path: Path, updates: dict[str, str]) -> None:
    """``postconf -e``: replace each named entry where it stands, append the new ones."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    placed: set[str] = set()
    for setting in reversed(parse_main_cf(text, str(path))):
        if setting.name in updates and setting.name not in placed:
            new_line = f"{setting.name} = {updates[setting.name]}"
            lines[setting.first_line - 1 : setting.last_line] = [new_line]
            placed.add(setting.name)
        elif setting.name in updates:
            del lines[setting.first_line - 1 : setting.last_line]
    lines.extend(f"{name} = {value}" for name, value in updates.items() if name not in placed)
    _write_atomically(path, "\n".join(lines) + "\n")


def comment_out_main_cf(path: Path, names: list[str]) -> list[str]:
    """``postconf -#``: prefix every line of the named entries with '#'; return names not found."""
    text = path.read_text()
    lines = text.splitlines()
    found: set[str] = set()
    for setting in parse_main_cf(text, str(path)):
        if setting.name in names:
            found.add(setting.name)
            for index in range(setting.first_line - 1, setting.last_line):
                lines[index] = "#" + lines[index]
    _write_atomically(path, "\n".join(lines) + "\n")
    return [name for name in names if name not in found]


def _write_atomically(path: Path, text: str) -> None:
    # A crash mid-edit must never leave a truncated main.cf behind.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if path.exists():
        tmp.chmod(path.stat().st_mode & 0o7777)
    tmp.replace(path)
