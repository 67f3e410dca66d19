"""The ``mailcore map`` (postmap) and ``mailcore alias`` (postalias, newaliases) commands.

Owns: their command-line syntax and behaviour: build an index from a source file, query any
table type (-q key, -q - for keys on stdin), dump (-s), delete (-d), add from stdin (-i), keep
case (-f), last duplicate wins (-r); ``alias`` without files builds every alias_database entry.
Must not: print a traceback; every failure is ``mailcore map: FILE, line N: ...`` on stderr
and a non-zero exit status (1, as Postfix's fatal errors; -q/-d also exit 1 when nothing was
found).
Invariants: relative file names are relative to the current directory, as with postmap; the
main.cf parameters read are default_database_type and alias_database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mailcore.errors import TableError
from mailcore.tables import FILE_TYPES, SUPPORTED_TYPES, TableSet, split_table_spec
from mailcore.tables.aliases import parse_alias_source, split_alias_line
from mailcore.tables.base import logical_lines, parse_key_value, read_text
from mailcore.tables.indexed import (
    INDEX_SUFFIX,
    add_entries,
    build_index,
    delete_key,
    index_path,
    parse_map_source,
)


class MapConfig(Protocol):
    config_dir: Path

    def get(self, name: str) -> str: ...

    def get_list(self, name: str) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class _MapArg:
    kind: str
    name: str

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.name}"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", dest="keep_case", action="store_true",
                   help="do not fold keys to lower case (build and query)")
    p.add_argument("-r", dest="replace", action="store_true",
                   help="a duplicate key replaces the earlier entry (default: first wins)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-q", dest="query", metavar="KEY",
                      help='look up KEY (or keys read from stdin when KEY is "-")')
    mode.add_argument("-d", dest="delete", metavar="KEY",
                      help='delete KEY from an indexed table (keys from stdin when "-")')
    mode.add_argument("-s", dest="dump", action="store_true", help="print every entry")
    mode.add_argument("-i", dest="incremental", action="store_true",
                      help="add entries read from stdin to an existing index")


def add_map_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "map", help="build, query and edit lookup tables (postmap)",
        description="Build an indexed table from a 'key value' source file, or query it.",
    )
    _add_common(p)
    p.add_argument("files", nargs="+", metavar="[type:]file")
    return p


def add_alias_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "alias", help="build, query and edit alias tables (postalias, newaliases)",
        description="Build alias tables from aliases(5) files; without files, build every "
        "alias_database table (newaliases).",
    )
    _add_common(p)
    p.add_argument("files", nargs="*", metavar="[type:]file")
    return p


def run_map(ns: argparse.Namespace, config: MapConfig) -> int:
    return _run(ns, config, alias=False)


def run_alias(ns: argparse.Namespace, config: MapConfig) -> int:
    return _run(ns, config, alias=True)


def _run(ns: argparse.Namespace, config: MapConfig, *, alias: bool) -> int:
    prog = "mailcore alias" if alias else "mailcore map"

    def warn(message: str) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    try:
        files = list(ns.files) or (list(config.get_list("alias_database")) if alias else [])
        if not files:
            raise TableError("no table given" + (" and alias_database is empty" if alias else ""))
        default = config.get("default_database_type") or "hash"
        maps = [_map_arg(f, default) for f in files]
        if ns.query is not None:
            return asyncio.run(_query(ns, maps, warn))
        if ns.delete is not None:
            return _delete(ns, maps)
        if ns.dump:
            return _dump(ns, maps, alias=alias, warn=warn)
        for m in maps:
            _need_index(m)
        entries = (
            _stdin_entries(sys.stdin.read(), alias=alias, fold=not ns.keep_case, warn=warn)
            if ns.incremental else []
        )
        for m in maps:
            if ns.incremental:
                add_entries(m.kind, index_path(m.kind, Path(m.name)), entries,
                            source_name="-", replace=ns.replace, warn=warn)
            else:
                _build(m, alias=alias, fold=not ns.keep_case, replace=ns.replace, warn=warn)
        return 0
    except TableError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1


def _map_arg(text: str, default_type: str) -> _MapArg:
    head, sep, _ = text.partition(":")
    if sep and head and all(c.isalnum() or c in "_-" for c in head):
        kind, name = split_table_spec(text)
        if kind == "proxy":
            return _map_arg(name, default_type)
        return _MapArg(kind, name)
    return _MapArg(default_type.lower(), text)


def _need_index(m: _MapArg) -> None:
    if m.kind in INDEX_SUFFIX:
        return
    if m.kind in SUPPORTED_TYPES:
        reason = "is read from its source file" if m.kind in FILE_TYPES else "has no file"
        raise TableError(f"{m.spec}: table type {m.kind} {reason}; there is no index to build "
                         "or change")
    raise TableError(f"unsupported dictionary type: {m.kind}")


def _build(m: _MapArg, *, alias: bool, fold: bool, replace: bool,
           warn: Callable[[str], None]) -> None:
    source = Path(m.name)
    text = read_text(source)
    parse = parse_alias_source if alias else parse_map_source
    entries = parse(text, str(source), fold=fold, replace=replace, warn=warn)
    build_index(m.kind, index_path(m.kind, source), entries.items())


def _stdin_entries(text: str, *, alias: bool, fold: bool,
                   warn: Callable[[str], None]) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for number, line in logical_lines(text):
        pair = split_alias_line(line) if alias else parse_key_value(line)
        if pair is None or not pair[0] or not pair[1]:
            warn(f"-, line {number}: expected format: "
                 + ("name: value" if alias else "key whitespace value"))
            continue
        out.append((number, pair[0].lower() if fold else pair[0], pair[1]))
    return out


def _keys(arg: str) -> list[str]:
    if arg != "-":
        return [arg]
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


async def _query(ns: argparse.Namespace, maps: Sequence[_MapArg],
                 warn: Callable[[str], None]) -> int:
    tables = TableSet(warn=warn, fold_case=not ns.keep_case)
    try:
        opened = [tables.open(m.spec) for m in maps]
        found = 0
        for key in _keys(ns.query):
            for table in opened:
                value = await table.get(key)
                if value is not None:
                    print(f"{key}\t{value}" if ns.query == "-" else value)
                    found += 1
                    break
        return 0 if found else 1
    finally:
        tables.close()


def _delete(ns: argparse.Namespace, maps: Sequence[_MapArg]) -> int:
    deleted = 0
    for key in _keys(ns.delete):
        for m in maps:
            _need_index(m)
            if delete_key(m.kind, index_path(m.kind, Path(m.name)),
                          key if ns.keep_case else key.lower()):
                deleted += 1
    return 0 if deleted else 1


def _dump(ns: argparse.Namespace, maps: Sequence[_MapArg], *, alias: bool,
          warn: Callable[[str], None]) -> int:
    tables = TableSet(warn=warn, fold_case=not ns.keep_case)
    try:
        for m in maps:
            items = getattr(tables.open(m.spec), "items", None)
            if items is None:
                raise TableError(f"{m.spec}: table type {m.kind} cannot be listed (-s)")
            for key, value in items():
                print(f"{key}: {value}" if alias else f"{key}\t{value}")
        return 0
    finally:
        tables.close()
