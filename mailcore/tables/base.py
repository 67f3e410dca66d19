"""Shared pieces of every lookup table: the Table protocol, spec parsing and file reloading.

Owns: the ``Table`` protocol, ``type:name`` splitting, brace-list parsing used by inline:,
static:, unionmap: and pipemap:, Postfix's logical-line reader (``#`` comments, blank lines,
continuation lines that start with whitespace) and ``FileWatch``, which decides when a table
file must be parsed again.
Must not: know which main.cf parameter uses a table, or hold any global state.
Invariants: every parse problem raises ``TableError`` carrying file and line; warnings go to
a caller-supplied callback, never to stdout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from mailcore.errors import TableError

Warn = Callable[[str], None]
T = TypeVar("T")

_log = logging.getLogger("mailcore.tables")


def log_warning(message: str) -> None:
    """Default warning sink: the mailcore.tables logger."""
    _log.warning("%s", message)


@runtime_checkable
class Table(Protocol):
    """One opened ``type:name`` table."""

    spec: str
    is_pattern: bool

    async def get(self, key: str) -> str | None: ...


def split_table_spec(spec: str) -> tuple[str, str]:
    """Split ``type:name`` at the first colon; a spec without a type is an error."""
    text = spec.strip()
    kind, sep, name = text.partition(":")
    if not sep or not kind:
        raise TableError(f'expecting "type:name" table format instead of "{spec}"')
    if not all(c.isalnum() or c in "_-" for c in kind):
        raise TableError(f'bad table type "{kind}" in "{spec}"')
    return kind.lower(), name


def split_values(result: str) -> list[str]:
    """Split a multi-value lookup result at commas and whitespace, dropping empty items."""
    return [item for item in result.replace(",", " ").split() if item]


def split_braced(text: str) -> list[str]:
    """Split at commas/whitespace outside ``{}``; an item wholly in braces is unwrapped."""
    items: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TableError(f'unbalanced "}}" in "{text}"')
        if depth == 0 and (ch == "," or ch.isspace()):
            if cur:
                items.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if depth != 0:
        raise TableError(f'missing "}}" in "{text}"')
    if cur:
        items.append("".join(cur))
    return items


def unbrace(item: str) -> str | None:
    """Return the text inside ``{ ... }`` (stripped), or None if item is not braced."""
    s = item.strip()
    if len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        return s[1:-1].strip()
    return None


def braced_name(kind: str, name: str) -> str:
    """The inside of the braces that must surround ``name`` for table type ``kind``."""
    inner = unbrace(name)
    if inner is None:
        raise TableError(f'{kind}:{name}: expecting "{kind}:{{...}}" with the braces')
    return inner


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Postfix logical lines: (first line number, text) with continuations joined.

    Comment and blank lines are skipped without ending the logical line, as Postfix's
    readllines does; a line that starts with whitespace continues the previous one.
    """
    out: list[tuple[int, str]] = []
    cur: str | None = None
    cur_no = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and cur is not None:
            cur += " " + stripped
            continue
        if cur is not None:
            out.append((cur_no, cur))
        cur, cur_no = stripped, number
    if cur is not None:
        out.append((cur_no, cur))
    return out


def read_text(path: Path) -> str:
    """Read a table file as UTF-8, turning OS and decoding errors into TableError."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise TableError(f"open {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TableError(f"not valid UTF-8 at byte {exc.start}", file=str(path)) from exc


@dataclass(frozen=True)
class FileStamp:
    inode: int
    mtime_ns: int
    size: int


def stamp(path: Path) -> FileStamp:
    """Identity of a file's current contents; a stat per lookup is a sub-millisecond syscall."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TableError(f"open {path}: {exc.strerror}") from exc
    return FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)


class FileWatch:
    """Remembers the stamp of the last successful load of one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: FileStamp | None = None

    def changed(self) -> FileStamp | None:
        """The new stamp if the file differs from the last load, else None."""
        now = stamp(self.path)
        return None if now == self._loaded else now

    def mark(self, loaded: FileStamp) -> None:
        self._loaded = loaded

    def reload(self, parse: Callable[[str], T]) -> T | None:
        """``parse(text)`` when the file changed since the last load, else None. The file
        counts as loaded only once parse succeeded, so a broken edit is retried (and its
        error raised again) on the next lookup."""
        new = self.changed()
        if new is None:
            return None
        parsed = parse(read_text(self.path))
        self.mark(new)
        return parsed


def parse_key_value(line: str) -> tuple[str, str] | None:
    """Split a ``key whitespace value`` line; None when the value is missing."""
    parts = line.split(None, 1)
    if len(parts) < 2:
        return None
    return parts[0], parts[1].strip()
