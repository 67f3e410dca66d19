"""cidr: tables: IPv4/IPv6 network rules, first match wins, with ``if``/``endif`` blocks.

Owns: cidr_table(5) syntax (``[!]network[/len] result``, ``if [!]network/len`` ... ``endif``,
optional ``[]`` around addresses) and matching a client address against it.
Must not: resolve host names (keys that are not IP addresses simply do not match).
Invariants: a rule whose network has host bits set is skipped with a warning naming file and
line, as Postfix does; an ``if`` with host bits set is kept as a block that never matches so
that its ``endif`` still pairs up.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from mailcore.errors import TableError
from mailcore.tables.base import FileWatch, Warn, log_warning, logical_lines

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> Network:
    """Parse ``addr``, ``addr/len``, ``[addr]/len`` or ``[addr/len]``; ValueError on bad input.

    Host bits set raise ValueError whose message contains "host address bits".
    """
    t = text.strip()
    if t.startswith("["):
        close = t.find("]")
        if close < 0:
            raise ValueError(f'missing "]" in "{text}"')
        t = t[1:close] + t[close + 1 :]
    if "/" in t:
        addr, _, length = t.partition("/")
        if not length.isdigit():
            raise ValueError(f'bad network mask length in "{text}"')
        try:
            return ipaddress.ip_network(f"{addr}/{int(length)}", strict=True)
        except ValueError as exc:
            if "host bits" in str(exc):
                raise ValueError(f'non-null host address bits in "{text}"') from exc
            raise ValueError(f'bad network address "{text}"') from exc
    try:
        return ipaddress.ip_network(t, strict=True)
    except ValueError as exc:
        raise ValueError(f'bad address pattern "{text}"') from exc


def parse_address(text: str) -> Address | None:
    """An IP address from a lookup key (brackets allowed), or None if it is not one."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    if t[:5].lower() == "ipv6:":
        t = t[5:]
    try:
        return ipaddress.ip_address(t)
    except ValueError:
        return None


def address_in(addr: Address, net: Network) -> bool:
    """Membership that never mixes families (an IPv4 rule never matches an IPv6 key)."""
    return addr.version == net.version and addr in net


@dataclass(frozen=True)
class _Rule:
    line: int
    network: Network | None  # None: a skipped rule that never matches
    negate: bool
    result: str


@dataclass(frozen=True)
class _IfBlock:
    line: int
    network: Network | None
    negate: bool
    rules: tuple[_Rule | _IfBlock, ...]


def _pattern(text: str, filename: str, number: int, warn: Warn) -> tuple[Network | None, bool]:
    negate = False
    t = text.strip()
    while t.startswith("!"):
        negate = not negate
        t = t[1:].lstrip()
    try:
        return parse_network(t), negate
    except ValueError as exc:
        if "host address bits" in str(exc):
            warn(f"{filename}, line {number}: {exc}, skipping this rule")
            return None, negate
        raise TableError(str(exc), file=filename, line=number) from exc


def parse_cidr(text: str, filename: str, warn: Warn = log_warning) -> tuple[_Rule | _IfBlock, ...]:
    stack: list[tuple[int, Network | None, bool, list[_Rule | _IfBlock]]] = [(0, None, False, [])]
    for number, line in logical_lines(text):
        word = re.match(r"(?i)(if|endif)(?![A-Za-z0-9])", line)
        if word and word.group(1).lower() == "if":
            net, negate = _pattern(line[2:], filename, number, warn)
            stack.append((number, net, negate, []))
            continue
        if word:
            if len(stack) == 1:
                raise TableError("ENDIF without matching IF", file=filename, line=number)
            start, net, negate, rules = stack.pop()
            stack[-1][3].append(_IfBlock(start, net, negate, tuple(rules)))
            continue
        parts = line.split(None, 1)
        if parts[0] == "!" and len(parts) == 2:
            sub = parts[1].split(None, 1)
            parts = ["!" + sub[0], *sub[1:]]
        if len(parts) < 2:
            warn(f"{filename}, line {number}: no lookup result, skipping this rule")
            continue
        net, negate = _pattern(parts[0], filename, number, warn)
        stack[-1][3].append(_Rule(number, net, negate, parts[1].strip()))
    if len(stack) > 1:
        raise TableError("IF has no matching ENDIF", file=filename, line=stack[-1][0])
    return tuple(stack[0][3])


def _hit(net: Network | None, negate: bool, addr: Address) -> bool:
    if net is None:
        return False
    return address_in(addr, net) != negate


def _first(rules: tuple[_Rule | _IfBlock, ...], addr: Address) -> str | None:
    for rule in rules:
        if isinstance(rule, _IfBlock):
            if _hit(rule.network, rule.negate, addr):
                found = _first(rule.rules, addr)
                if found is not None:
                    return found
        elif _hit(rule.network, rule.negate, addr):
            return rule.result
    return None


class CidrTable:
    """cidr: rules read from a file and re-read when it changes."""

    is_pattern = True

    def __init__(self, spec: str, path: Path, *, warn: Warn = log_warning) -> None:
        self.spec = spec
        self.path = path
        self._warn = warn
        self._watch = FileWatch(path)
        self._rules: tuple[_Rule | _IfBlock, ...] = ()
        self._reload()

    def _reload(self) -> None:
        rules = self._watch.reload(lambda text: parse_cidr(text, str(self.path), self._warn))
        if rules is not None:
            self._rules = rules

    async def get(self, key: str) -> str | None:
        self._reload()
        addr = parse_address(key)
        return None if addr is None else _first(self._rules, addr)
