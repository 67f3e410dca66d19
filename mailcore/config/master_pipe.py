"""pipe(8) attributes of master.cf pipe services: parsing ``flags= user= ... argv=`` words.

Owns: the ``PipeSpec`` record, the pipe flag letters mailcore knows, and turning the operands of a
pipe service into a ``PipeSpec`` (attribute names case-insensitive, everything after ``argv=`` is
the command, ``eol=`` escapes decoded as Postfix's unescape()).
Must not: expand ``$name`` or ``${recipient}`` in argv (the pipe agent does), look users up, or
run anything.

Invariants: a ``PipeSpec`` never runs as root, always has a non-empty ``argv[0]``, and its
``flags`` hold only letters from ``PIPE_FLAGS``; every refusal is the ``ConfigError`` of the
master.cf line being parsed.

Reads no main.cf parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from mailcore.errors import ConfigError

PIPE_FLAGS = frozenset("BDFORXhqu.>")
PIPE_DEFAULT_NULL_SENDER = "MAILER-DAEMON"
_OCTAL = re.compile(r"[0-7]{1,3}")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class _Site(Protocol):
    """The master.cf line being parsed (master.py's ``_Where``): it builds the ConfigError."""

    def error(self, message: str) -> ConfigError: ...


@dataclass(frozen=True)
class PipeSpec:
    """pipe(8) attributes. ``argv`` is kept unexpanded (``${recipient}`` stays as written)."""

    flags: str
    user: str
    group: str | None
    argv: tuple[str, ...]
    size_limit: int | None = None  # None: no limit (absent or size=0)
    eol: str = "\n"  # escapes already decoded
    directory: str | None = None
    null_sender: str = PIPE_DEFAULT_NULL_SENDER
    chroot: str | None = None



def _pipe_spec(words: tuple[str, ...], where: _Site) -> PipeSpec:
    """pipe(8) attributes; names are case-insensitive and everything after argv= is argv."""
    found: dict[str, str] = {}
    flags, argv = "", None
    for index, word in enumerate(words):
        name, equals, value = word.partition("=")
        key = name.lower()
        if not equals or key not in ("flags", "user", "size", "eol", "directory",
                                     "null_sender", "chroot", "argv"):
            raise where.error(f'pipe: unknown attribute "{word}": expected flags=, user=, '
                              "size=, eol=, directory=, null_sender=, chroot= or argv=")
        if key == "argv":
            argv = (value, *words[index + 1:])
            break
        if key == "flags":
            flags += _pipe_flags(value, where)
        found[key] = value
    return _pipe_from(found, flags, argv, where)


def _pipe_flags(value: str, where: _Site) -> str:
    unknown = sorted(set(value) - PIPE_FLAGS)
    if unknown:
        raise where.error(f'pipe: unknown flag(s) {"".join(unknown)} in flags={value}: '
                          f'expected letters from {"".join(sorted(PIPE_FLAGS))}')
    return value


def _pipe_from(found: dict[str, str], flags: str, argv: tuple[str, ...] | None,
               where: _Site) -> PipeSpec:
    if "user" not in found:
        raise where.error("pipe: missing user= attribute (the user the command runs as)")
    user, _, group = found["user"].partition(":")
    if not user:
        raise where.error("pipe: user= needs a user name")
    if user == "root" or group == "root":
        raise where.error("pipe: user= must not give root privileges")
    if argv is None:
        raise where.error("pipe: missing argv= attribute (the command to run; it must come last)")
    if not argv[0]:
        raise where.error('pipe: argv= needs a command right after "="')
    size = found.get("size")
    if size is not None and not (size.isascii() and size.isdigit()):
        raise where.error(f'pipe: size= expects a number of bytes, got "{size}"')
    return PipeSpec(
        flags=flags, user=user, group=group or None, argv=argv,
        size_limit=(int(size) or None) if size is not None else None,
        eol=_unescape(found.get("eol", "\\n")),
        directory=found.get("directory"),
        null_sender=found.get("null_sender", PIPE_DEFAULT_NULL_SENDER),
        chroot=found.get("chroot"),
    )


def _unescape(text: str) -> str:
    """C-like escapes as Postfix's unescape(): \\n \\t ... \\ooo; any other \\x gives x."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char != "\\" or index == len(text):
            out.append(char if char != "\\" else "")
            continue
        octal = _OCTAL.match(text, index)
        if octal:
            out.append(chr(int(octal.group(), 8) & 0xFF))  # C char truncation
            index = octal.end()
            continue
        out.append(_ESCAPES.get(text[index], text[index]))
        index += 1
    return "".join(out)

