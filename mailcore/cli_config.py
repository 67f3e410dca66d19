"""``mailcore config``: postconf(1) for mailcore.

Owns: printing parameters (effective, ``-d`` defaults, ``-n`` non-default, ``-h`` value only,
``-x`` expanded), ``-e`` / ``-#`` edits of main.cf, ``-m`` table types, ``-M`` master.cf
services, and ``-j`` JSON for machines.

Must not: parse main.cf itself (mailcore.config does) or change anything but main.cf.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from mailcore.config import Config
from mailcore.config.maincf import comment_out_main_cf, edit_main_cf
from mailcore.config.master import format_service
from mailcore.config.params import DEVIATIONS, PARAMETERS
from mailcore.errors import UsageError
from mailcore.tables import SUPPORTED_TYPES


def add_config_parser(subparsers: argparse._SubParsersAction) -> None:
    # add_help=False: -h means "values only" here, as in postconf.
    parser = subparsers.add_parser(
        "config", help="show or edit parameters (postconf)", add_help=False,
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-d", dest="defaults", action="store_true", help="show default values")
    parser.add_argument("-n", dest="non_default", action="store_true",
                        help="show only parameters set in main.cf")
    parser.add_argument("-h", dest="value_only", action="store_true",
                        help="show values only, without 'name = '")
    parser.add_argument("-x", dest="expand", action="store_true", help="expand $name in values")
    parser.add_argument("-e", dest="edit", action="store_true",
                        help="edit main.cf: arguments are name=value")
    parser.add_argument("-#", dest="comment", action="store_true",
                        help="comment out the named parameters in main.cf")
    parser.add_argument("-m", dest="types", action="store_true", help="list lookup table types")
    parser.add_argument("-M", dest="master", action="store_true",
                        help="show master.cf services (arguments: service or service/type)")
    parser.add_argument("-j", "--json", dest="json", action="store_true", help="JSON output")
    parser.add_argument("names", nargs="*", help="parameter names (or name=value with -e)")


def run_config(ns: argparse.Namespace, load: Callable[[], Config],
               out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if ns.types:
        return _emit(ns, out, list(SUPPORTED_TYPES), lambda: "\n".join(SUPPORTED_TYPES))
    config = load()
    if ns.edit:
        return _edit(ns, config)
    if ns.comment:
        return _comment(ns, config)
    if ns.master:
        return _master(ns, config, out)
    return _parameters(ns, config, out)


def _emit(ns: argparse.Namespace, out: TextIO, data: object, text: Callable[[], str]) -> int:
    rendered = json.dumps(data, indent=2, sort_keys=True) if ns.json else text()
    if rendered:
        out.write(rendered + "\n")
    return 0


def _parameters(ns: argparse.Namespace, config: Config, out: TextIO) -> int:
    names = ns.names or (sorted(config.explicit) if ns.non_default else config.names())
    unknown = [n for n in names if config.spec(n) is None and n not in config.explicit]
    for name in unknown:
        print(f"mailcore config: warning: {name}: unknown parameter", file=sys.stderr)
    values = {name: _value(ns, config, name) for name in names if name not in unknown}
    if ns.non_default:
        values = {n: v for n, v in values.items() if n in config.explicit}
    if ns.value_only:
        text = "\n".join(values.values())
    else:
        text = "\n".join(_line(name, value) for name, value in values.items())
    _emit(ns, out, values, lambda: text)
    return 1 if unknown else 0


def _value(ns: argparse.Namespace, config: Config, name: str) -> str:
    if ns.defaults:
        raw = config.default(name) or ""
        return config.expand(raw) if ns.expand else raw
    return config.get(name) if ns.expand else (config.raw(name) or "")


def _line(name: str, value: str) -> str:
    return f"{name} = {value}" if value else f"{name} ="


def _edit(ns: argparse.Namespace, config: Config) -> int:
    updates: dict[str, str] = {}
    for item in ns.names:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"-e takes name=value, not {item!r}")
        updates[name.strip()] = value.strip()
    if not updates:
        raise UsageError("-e needs at least one name=value")
    for name in updates:
        if name not in PARAMETERS and config.spec(name) is None:
            print(f"mailcore config: warning: {name}: unknown parameter", file=sys.stderr)
    edit_main_cf(_main_cf(config), updates)
    return 0


def _comment(ns: argparse.Namespace, config: Config) -> int:
    if not ns.names:
        raise UsageError("-# needs at least one parameter name")
    missing = comment_out_main_cf(_main_cf(config), list(ns.names))
    for name in missing:
        print(f"mailcore config: warning: {name}: not set in main.cf", file=sys.stderr)
    return 0


def _main_cf(config: Config) -> Path:
    return config.config_dir / "main.cf"


def _master(ns: argparse.Namespace, config: Config, out: TextIO) -> int:
    services = [s for s in config.master.services if _wanted(s.name, s.type, ns.names)]
    data = [
        {
            "service": s.name, "type": s.type, "private": s.private, "unpriv": s.unpriv,
            "chroot": s.chroot, "wakeup": s.wakeup, "maxproc": s.maxproc,
            "command": s.command, "args": list(s.args), "overrides": dict(s.overrides),
            "file": s.file, "line": s.line,
        }
        for s in services
    ]
    return _emit(ns, out, data, lambda: "\n".join(format_service(s) for s in services))


def _wanted(name: str, type_: str, filters: list[str]) -> bool:
    if not filters:
        return True
    for item in filters:
        want_name, _, want_type = item.partition("/")
        if want_name == name and (not want_type or want_type == type_):
            return True
    return False


def describe_deviation(name: str) -> str | None:
    """Why mailcore's default for ``name`` differs from Postfix's, if it does."""
    return DEVIATIONS.get(name)
