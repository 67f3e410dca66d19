"""qshape for the SQLite queue: how many recipients (or senders) per domain, by age.

Owns: qshape's arithmetic and layout. Ages are counted from the message's arrival time in
buckets of ``tick`` minutes that double in size (or grow linearly with ``linear``), the last
bucket open-ended; the first column is the total. Domains come from the pending recipients
(or, with ``senders``, one sender per message), lower-cased, the null sender shown as
MAILER-DAEMON; with ``parents`` every parent domain below the top level is counted too and
shown (with a leading dot) once it has ``min_subdomains`` subdomains. Rows are ordered by
total, then by the length of the name (then by name, where qshape leaves it to chance); the
TOTAL row comes first, and ``top`` caps the number of rows including it. Columns are
right-aligned so the last one ends at ``width``; a domain too long for its field keeps its
last characters behind a ``+`` (``.+`` for a parent domain).

Must not: read the queue itself; the caller feeds ``Shape.add`` from a listing stream.

Invariants: the functions are pure; counts never depend on the order messages are added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

TOTAL = "TOTAL"
MIN_DOMAIN_WIDTH = 18
_PARENT = re.compile(r"^\.?[^.]+\.(.*\.)")


@dataclass(frozen=True)
class ShapeOptions:
    buckets: int = 10  # -b: age buckets (the total column comes on top)
    tick: float = 5  # -t: minutes covered by the first bucket
    linear: bool = False  # -l
    senders: bool = False  # -s
    parents: bool = False  # -p
    min_subdomains: int = 5  # -m
    width: int = 80  # -w
    top: int = 0  # -n: rows shown including TOTAL; 0 shows all

    def __post_init__(self) -> None:
        if self.buckets < 1 or self.tick <= 0 or self.min_subdomains < 1 or self.top < 0:
            raise ValueError("bucket count, bucket time and subdomain count must be positive")


def bucket(age_seconds: float, opts: ShapeOptions) -> int:
    """Which age bucket (1..buckets) a message of this age falls in."""
    m = age_seconds / (60 * opts.tick)
    if m < 1:
        return 1
    index = int(m + 1) if opts.linear else 2 + int(math.log2(m))
    return min(index, opts.buckets)


def domain_of(address: str) -> str:
    """qshape's domain of an address: after the last @, lower case, ".." folded, one
    leading and one trailing dot dropped; the null address is MAILER-DAEMON."""
    text = address.lower()
    if text == "":
        return "MAILER-DAEMON"
    text = text.rpartition("@")[2]
    text = text.replace("..", ".")
    if text.startswith(".") and len(text) > 1:
        text = text[1:]
    if text.endswith(".") and len(text) > 1:
        text = text[:-1]
    return text


def _label(value: float) -> str:
    return f"{value:g}"


def headings(opts: ShapeOptions) -> list[str]:
    """"T", then each bucket's upper age limit in minutes, the last one with a "+"."""
    heads = ["T"]
    limit = 0.0
    for index in range(1, opts.buckets + 1):
        limit += limit if (limit and not opts.linear) else opts.tick
        heads.append(_label(limit) if index < opts.buckets else "")
    # The open-ended last bucket is labelled with the limit of the one before it, plus "+".
    heads[-1] = (heads[-2] if opts.buckets > 1 else "0") + "+"
    return heads


@dataclass
class Shape:
    opts: ShapeOptions
    counts: dict[str, list[int]] = field(default_factory=dict)
    subdomains: dict[str, int] = field(default_factory=dict)

    def add(self, age_seconds: float, sender: str, recipients: Iterable[str]) -> None:
        """One message; messages without pending recipients are not counted (as qshape
        skips queue files without recipient records)."""
        pending = list(recipients)
        if not pending:
            return
        index = bucket(age_seconds, self.opts)
        for address in [sender] if self.opts.senders else pending:
            self._count(TOTAL, index)
            name = domain_of(address)
            new_child = False
            while True:
                first = self._count(name, index)
                if new_child:
                    self.subdomains[name] = self.subdomains.get(name, 0) + 1
                new_child = first
                if not self.opts.parents:
                    break
                name, found = _PARENT.subn(r".\1", name, count=1)
                if not found:
                    break

    def _count(self, name: str, index: int) -> bool:
        """Count one address; True when ``name`` was seen for the first time."""
        row = self.counts.get(name)
        if row is None:
            row = self.counts[name] = [0] * (self.opts.buckets + 1)
        row[0] += 1
        row[index] += 1
        return row[0] == 1

    def rows(self) -> list[tuple[str, list[int]]]:
        total = self.counts.get(TOTAL) or [0] * (self.opts.buckets + 1)
        ordered = sorted((item for item in self.counts.items() if item[0] != TOTAL),
                         key=lambda item: (-item[1][0], len(item[0]), item[0]))
        shown = [(TOTAL, total)] + [
            (name, row) for name, row in ordered
            if not name.startswith(".") or self.subdomains.get(name, 0) >= self.opts.min_subdomains
        ]
        return shown[:self.opts.top] if self.opts.top else shown


def _domain_field(name: str, width: int) -> str:
    if len(name) <= width:
        return name.rjust(width)
    if name.startswith("."):
        return ".+" + name[len(name) - width + 2:]
    return "+" + name[len(name) - width + 1:]


def format_shape(shape: Shape) -> str:
    opts = shape.opts
    heads = headings(opts)
    total = shape.counts.get(TOTAL) or [0] * (opts.buckets + 1)
    widths = []
    for head, count in zip(heads, total, strict=True):
        size = max(len(str(count)), len(head))
        widths.append(size + 1 if size > 2 else 3)
    domain_width = max(MIN_DOMAIN_WIDTH, opts.width - sum(widths))

    def line(name: str, cells: list[str]) -> str:
        return _domain_field(name, domain_width) + "".join(
            cell.rjust(size) for cell, size in zip(cells, widths, strict=True)) + "\n"

    out = [line("", heads)]
    out += [line(name, [str(n) for n in row]) for name, row in shape.rows()]
    return "".join(out)
