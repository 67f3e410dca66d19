"""master.cf: Postfix master(5) service definitions as an immutable, typed model.

Owns: reading master.cf text into ``Service`` records (one per logical line), the ``-o``
overrides of each service, inet listen addresses and ports, and the ``MasterConfig`` model.
Parts: master_pipe.py (pipe(8) attributes, ``PipeSpec``), master_roles.py (listeners,
transports and the verdict on which entries have no effect in one process), master_format.py
(``postconf -Mf`` style formatting). Their public names are importable from here too.

Must not: open sockets, look names up (no DNS, no NSS: ``resolve_port`` uses a built-in table),
expand ``$name`` in ``-o`` values or pipe argv (main.cf expansion and the pipe agent do that),
or read any file but the one it is given.

Invariants: a ``MasterConfig`` holds each name/type once, in file order; every bad line is a
``ConfigError`` carrying the file and the first physical line of the logical line; ``-`` columns
take Postfix 3.x defaults (private y, unpriv y, chroot n, no wakeup, maxproc default).

Reads no main.cf parameter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from mailcore.config.master_format import _BLANKS, format_service
from mailcore.config.master_pipe import PIPE_DEFAULT_NULL_SENDER, PIPE_FLAGS, PipeSpec, _pipe_spec
from mailcore.config.master_roles import (
    DELIVERY_AGENTS,
    LISTENER_DAEMON,
    _inert_reasons,
    _is_listener,
    _is_transport,
)
from mailcore.errors import ConfigError

__all__ = [
    "DELIVERY_AGENTS",
    "LISTENER_DAEMON",
    "PIPE_DEFAULT_NULL_SENDER",
    "PIPE_FLAGS",
    "SERVICE_TYPES",
    "WELL_KNOWN_PORTS",
    "MasterConfig",
    "PipeSpec",
    "Service",
    "format_service",
    "load_master_cf",
    "parse_master_cf",
    "resolve_port",
]

SERVICE_TYPES = frozenset({"inet", "unix", "unix-dgram", "fifo", "pass"})
WELL_KNOWN_PORTS: Mapping[str, int] = MappingProxyType({
    "smtp": 25, "submission": 587, "submissions": 465, "smtps": 465, "lmtp": 24,
})

_FIELDS = ("service name", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command")
_MAX_INT = 2**31 - 1  # Postfix keeps these fields in a C int
_HOSTNAME = re.compile(
    r"(?=.{1,255}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*\.?"
)
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")  # looks like an address, but is not a valid one
_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Service:
    """One master.cf entry.

    ``wakeup`` is None when there is no wakeup timer ('-' or 0); ``maxproc`` is None for '-'
    (default_process_limit) and 0 for no limit. ``args`` are the words after the command in
    normal form (``-o`` and ``name=value`` as two words, ``{}`` removed); ``operands`` are the
    words after the daemon options. ``columns`` are the eight fields as written.
    """

    name: str
    type: str
    private: bool
    unpriv: bool
    chroot: bool
    wakeup: int | None
    wakeup_conditional: bool
    maxproc: int | None
    command: str
    args: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...]
    file: str
    line: int
    host: str | None = None
    port: str | None = None
    pipe: PipeSpec | None = None
    verbose: int = 0
    debug: bool = False
    operands: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}/{self.type}"

    @property
    def daemon(self) -> str:
        """The program name, without any directory part."""
        return self.command.rsplit("/", 1)[-1]

    @property
    def override_map(self) -> Mapping[str, str]:
        """``-o`` values by name; a later ``-o`` for the same name wins, as in Postfix."""
        return MappingProxyType(dict(self.overrides))


@dataclass(frozen=True)
class MasterConfig:
    services: tuple[Service, ...]

    def get(self, name: str, type: str) -> Service | None:
        return next((s for s in self.services if s.name == name and s.type == type), None)

    def listeners(self) -> tuple[Service, ...]:
        """inet services run by smtpd: the addresses mailcore listens on."""
        return tuple(s for s in self.services if _is_listener(s))

    def transports(self) -> Mapping[str, Service]:
        """unix services run by a delivery agent, by name (the transport names of routing)."""
        return MappingProxyType({s.name: s for s in self.services if _is_transport(s)})

    def inert(self) -> tuple[tuple[Service, str], ...]:
        """Entries and fields that have no effect in mailcore, each with the reason."""
        return tuple((s, reason) for s in self.services for reason in _inert_reasons(s))


@dataclass(frozen=True)
class _Where:
    file: str
    line: int

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line)


@dataclass(frozen=True)
class _Options:
    args: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...]
    verbose: int
    debug: bool
    operands: tuple[str, ...]


def parse_master_cf(text: str, filename: str) -> MasterConfig:
    """Parse master.cf text; ``filename`` is used in error messages and ``Service.file``."""
    services: list[Service] = []
    seen: dict[str, int] = {}
    for line, logical in _logical_lines(text, filename):
        service = _parse_entry(logical, _Where(filename, line))
        if service.key in seen:
            raise ConfigError(
                f"duplicate service {service.key} (first defined on line {seen[service.key]})",
                file=filename, line=line)
        seen[service.key] = line
        services.append(service)
    return MasterConfig(tuple(services))


def load_master_cf(path: Path) -> MasterConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from exc
    return parse_master_cf(text, str(path))


def resolve_port(port: str, *, file: str | None = None, line: int | None = None) -> int:
    """A port number from digits or a well-known name; never asks the system's services db."""
    if port.isascii() and port.isdigit():
        number = int(port)
        # Port 0 (mailcore's own): the kernel picks a free port; embedders and tests read the
        # bound port back from the running server.
        if 0 <= number <= 65535:
            return number
        raise ConfigError(f"port {port} is out of range (0-65535)", file=file, line=line)
    if port.lower() in WELL_KNOWN_PORTS:
        return WELL_KNOWN_PORTS[port.lower()]
    known = ", ".join(sorted(WELL_KNOWN_PORTS))
    raise ConfigError(f'unknown service name "{port}": use a port number or one of {known}',
                      file=file, line=line)


def _logical_lines(text: str, filename: str) -> list[tuple[int, str]]:
    """Join continuation lines; skip blank and comment lines, also between continuations."""
    result: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip(_BLANKS)
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if not parts:
                raise ConfigError("continuation line (starts with whitespace) has no service "
                                  "line before it", file=filename, line=number)
            parts.append(stripped)
            continue
        if parts:
            result.append((start, " ".join(parts)))
        start, parts = number, [stripped]
    if parts:
        result.append((start, " ".join(parts)))
    return result


def _split_words(text: str, where: _Where) -> list[str]:
    """Split at blanks, except inside {} (Postfix 3.0 grouping); braces may nest."""
    words: list[str] = []
    i, end = 0, len(text)
    while i < end:
        if text[i] in _BLANKS:
            i += 1
            continue
        start, depth = i, 0
        while i < end and (depth or text[i] not in _BLANKS):
            depth += {"{": 1, "}": -1 if depth else 0}.get(text[i], 0)
            i += 1
        if depth:
            raise where.error(f'missing "}}" in "{text[start:i]}"')
        words.append(text[start:i])
    return words


def _unbrace(word: str, where: _Where) -> str:
    """``{ text }`` -> ``text`` with surrounding blanks removed; other words unchanged."""
    if not word.startswith("{"):
        return word
    depth = 0
    for index, char in enumerate(word):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            if index != len(word) - 1:
                raise where.error(f'text after "}}" in "{word}"')
            return word[1:index].strip(_BLANKS)
    raise where.error(f'missing "}}" in "{word}"')


def _parse_entry(text: str, where: _Where) -> Service:
    words = _split_words(text, where)
    if len(words) < len(_FIELDS):
        raise where.error(f'missing "{_FIELDS[len(words)]}" field: a service line needs '
                          "name, type, private, unpriv, chroot, wakeup, maxproc and command")
    name, kind, private, unpriv, chroot, wakeup, maxproc, command = words[:8]
    if kind not in SERVICE_TYPES:
        raise where.error(f'unknown service type "{kind}" for {name}: expected one of '
                          + ", ".join(sorted(SERVICE_TYPES)))
    is_private = _bool_field(private, "private", True, where)
    if kind == "inet" and is_private:
        raise where.error(f"inet service {name} cannot be private: put n in the private column")
    wake, conditional = _wakeup_field(wakeup, where)
    options = _daemon_options(words[8:], where)
    service = Service(
        name=name, type=kind, private=is_private,
        unpriv=_bool_field(unpriv, "unpriv", True, where),
        chroot=_bool_field(chroot, "chroot", False, where),
        wakeup=wake, wakeup_conditional=conditional,
        maxproc=None if maxproc == "-" else _number(maxproc, "maxproc", where),
        command=command, args=options.args, overrides=options.overrides,
        file=where.file, line=where.line, verbose=options.verbose, debug=options.debug,
        operands=options.operands, columns=tuple(words[1:8]),
    )
    return _with_details(service, where)


def _with_details(service: Service, where: _Where) -> Service:
    """Fill the listen address of inet services and the attributes of pipe services."""
    host = port = None
    if service.type == "inet":
        host, port = _listen_address(service.name, where)
        if service.daemon == LISTENER_DAEMON:
            resolve_port(port, file=where.file, line=where.line)
    pipe = _pipe_spec(service.operands, where) if service.daemon == "pipe" else None
    return replace(service, host=host, port=port, pipe=pipe)


def _bool_field(value: str, field: str, default: bool, where: _Where) -> bool:
    if value == "-":
        return default
    if value in ("y", "n"):
        return value == "y"
    raise where.error(f'{field} field: expected y, n or -, got "{value}"')


def _number(value: str, field: str, where: _Where) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_INT:
        raise where.error(f'{field} field: expected - or a whole number, got "{value}"')
    return int(value)


def _wakeup_field(value: str, where: _Where) -> tuple[int | None, bool]:
    if value == "-":
        return None, False
    digits = value.removesuffix("?")
    if not (digits.isascii() and digits.isdigit()) or int(digits) > _MAX_INT:
        raise where.error(f'wakeup field: expected -, seconds, or seconds followed by "?", '
                          f'got "{value}"')
    seconds = int(digits)
    return (seconds or None), (seconds > 0 and value.endswith("?"))


def _daemon_options(words: list[str], where: _Where) -> _Options:
    """Leading -o/-v/-D options (getopt style: they end at the first other word or ``--``)."""
    args: list[str] = []
    overrides: list[tuple[str, str]] = []
    verbose, debug, index = 0, False, 0
    while index < len(words):
        word = words[index]
        if word == "--":
            args.append(word)
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        index += 1
        letters, _, joined = word[1:].partition("o")
        if letters.strip("vD"):
            raise where.error(f'unknown daemon option "{word}": expected -o name=value, -v or -D')
        verbose += letters.count("v")
        debug = debug or "D" in letters
        if letters:
            args.append("-" + letters)
        if "o" not in word[1:]:
            continue
        if not joined:
            if index == len(words):
                raise where.error("-o needs a name=value after it")
            joined, index = words[index], index + 1
        name, value = _name_value(_unbrace(joined, where), where)
        overrides.append((name, value))
        args += ["-o", f"{name}={value}"]
    operands = tuple(_unbrace(word, where) for word in words[index:])
    return _Options(tuple(args) + operands, tuple(overrides), verbose, debug, operands)


def _name_value(text: str, where: _Where) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    name = name.strip(_BLANKS)
    if not equals:
        raise where.error(f'-o "{text}": expected name=value')
    if not name or any(c in _BLANKS for c in name):
        raise where.error(f'-o "{text}": expected a parameter name before "="')
    return name, value.strip(_BLANKS)


def _listen_address(name: str, where: _Where) -> tuple[str | None, str]:
    """inet service name -> (host or None for every address, port), as Postfix's host_port."""
    if name.startswith("["):
        host, bracket, rest = name[1:].partition("]")
        if not bracket:
            raise where.error(f'missing "]" in service name "{name}"')
        if rest and not rest.startswith(":"):
            raise where.error(f'expected ":port" after "]" in service name "{name}"')
        if host[:5].lower() == "ipv6:":
            host = host[5:]
            if not _is_ip(host, version=6):
                raise where.error(f'bad IPv6 address in service name "{name}"')
        port, bracketed = rest[1:], True
    else:
        host, _, port = name.rpartition(":")
        bracketed = False
    if not port:
        raise where.error(f'service name "{name}" has no port or service name')
    if (host or bracketed) and not _is_ip(host) and (
            not _HOSTNAME.fullmatch(host) or _DOTTED_NUMBERS.fullmatch(host)):
        raise where.error(f'bad host name or address in service name "{name}"')
    if port[0].isdigit() and not (port.isascii() and port.isdigit()):
        raise where.error(f'bad port "{port}" in service name "{name}"')
    if not port[0].isdigit() and not _SERVICE_NAME.fullmatch(port):
        raise where.error(f'bad service name "{port}" in "{name}"')
    return host or None, port


def _is_ip(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version

