"""``postconf -M``-style formatting of master.cf entries.

Owns: printing a ``Service`` as ``postconf -Mf`` does (columns aligned, each ``-o`` on its own
line, long lines wrapped, words with blanks wrapped in ``{}``) and the blank characters master(5)
splits words at, which the parser shares so that formatted text parses back the same.
Must not: parse master.cf or read files.

Invariants: parsing ``format_service(s)`` gives back ``s`` in every field but file and line.

Reads no main.cf parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailcore.config.master import Service

_BLANKS = " \t\r\n"
_COLUMN_GOALS = (0, 11, 17, 25, 33, 41, 49, 57)
_LINE_LIMIT = 80
_INDENT = "    "


def format_service(service: Service) -> str:
    """The entry as ``postconf -Mf`` prints it: aligned columns, each -o on its own line."""
    line = ""
    for goal, field in zip(_COLUMN_GOALS, (service.name, *_columns(service)), strict=True):
        if line:
            line = (line + " ").ljust(goal)
        line += field
    lines = [line]
    args, index, in_options, force_wrap = service.args, 0, True, False
    while index < len(args):
        word = args[index]
        in_options = in_options and word.startswith("-") and word != "--"
        with_value = in_options and word == "-o" and index + 1 < len(args)
        if with_value:
            index += 1
            shown = f"-o {_shown(args[index])}"
        else:
            shown = word if in_options else _shown(word)
        # Postfix puts every option that takes a value on a line of its own.
        if with_value or force_wrap or len(lines[-1]) + 1 + len(shown) >= _LINE_LIMIT:
            lines.append(_INDENT + shown)
        else:
            lines[-1] += " " + shown
        force_wrap = with_value
        index += 1
    return "\n".join(lines)


def _shown(word: str) -> str:
    return f"{{{word}}}" if not word or any(c in _BLANKS for c in word) else word


def _columns(service: Service) -> tuple[str, ...]:
    if service.columns:
        return service.columns
    wakeup = "-" if service.wakeup is None else str(service.wakeup)
    return (service.type, "y" if service.private else "n", "y" if service.unpriv else "n",
            "y" if service.chroot else "n", wakeup + ("?" if service.wakeup_conditional else ""),
            "-" if service.maxproc is None else str(service.maxproc), service.command)
