"""The ``mailcore`` command: Postfix's tools as subcommands of one program.

Owns: argument parsing, picking the configuration directory (``-c CONFDIR``, then
``MAILCORE_CONFIG_DIR``), turning MailcoreError into a one-line message and an exit status,
and choosing uvloop for ``serve``. Every command's work lives in a module tests can call.

Must not: contain logic that tests cannot reach without a subprocess.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from mailcore import __version__
from mailcore.cli_config import add_config_parser, run_config
from mailcore.cli_local import add_sendmail_parser, run_sendmail
from mailcore.cli_maps import add_alias_parser, add_map_parser, run_alias, run_map
from mailcore.cli_ops import (
    add_flush_parser,
    add_reload_parser,
    add_status_parser,
    add_stop_parser,
    run_flush,
    run_reload,
    run_status,
    run_stop,
)
from mailcore.cli_queue import add_queue_parser, run_queue
from mailcore.cli_route import add_route_parser, run_route
from mailcore.cli_serve import add_serve_parser, run_serve
from mailcore.config import Config, load_config
from mailcore.errors import ConfigError, MailcoreError, UsageError

EX_USAGE = 64
EX_CONFIG = 78


class _Parser(argparse.ArgumentParser):
    """Usage errors become UsageError (exit 64, EX_USAGE) instead of argparse's exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailcore", description="A Postfix-compatible MTA.")
    parser.add_argument("--version", action="version", version=f"mailcore {__version__}")
    parser.add_argument("-c", dest="config_dir", metavar="CONFDIR",
                        help="configuration directory (default: $MAILCORE_CONFIG_DIR, "
                             "else /etc/mailcore)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_serve_parser(sub)
    add_config_parser(sub)
    add_map_parser(sub)
    add_alias_parser(sub)
    add_sendmail_parser(sub)
    add_queue_parser(sub)
    add_route_parser(sub)
    add_reload_parser(sub)
    add_stop_parser(sub)
    add_status_parser(sub)
    add_flush_parser(sub)
    check = sub.add_parser("check", help="validate the configuration and its tables")
    check.set_defaults(command="check")
    for sp in sub.choices.values():
        # -c is accepted after the subcommand too, as every Postfix tool takes it.
        sp.add_argument("-c", dest="sub_config_dir", metavar="CONFDIR", help=argparse.SUPPRESS)
    return parser


def config_loader(ns: argparse.Namespace) -> Callable[[], Config]:
    directory = getattr(ns, "sub_config_dir", None) or ns.config_dir
    return lambda: load_config(Path(directory) if directory else None)


def run(ns: argparse.Namespace) -> int:
    load = config_loader(ns)
    handlers: dict[str, Callable[[], int]] = {
        "serve": lambda: run_serve(ns, load),
        "config": lambda: run_config(ns, load),
        "map": lambda: run_map(ns, load()),
        "alias": lambda: run_alias(ns, load()),
        "check": lambda: run_check(load),
        "sendmail": lambda: run_sendmail(ns, load),
        "queue": lambda: run_queue(ns, load),
        "route": lambda: run_route(ns, load),
        "reload": lambda: run_reload(ns, load),
        "stop": lambda: run_stop(ns, load),
        "status": lambda: run_status(ns, load),
        "flush": lambda: run_flush(ns, load),
    }
    return handlers[ns.command]()


def run_check(load: Callable[[], Config]) -> int:
    """postfix check: report every finding; exit 1 when mail cannot flow as configured."""
    import asyncio

    from mailcore.check import ERROR, INFO, check

    findings = asyncio.run(check(load()))
    for finding in findings:
        stream = sys.stdout if finding.level == INFO else sys.stderr
        label = "" if finding.level == INFO else f"{finding.level}: "
        print(f"mailcore check: {label}{finding.text}", file=stream)
    return 1 if any(f.level == ERROR for f in findings) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = "mailcore"
    try:
        ns = build_parser().parse_args(args)
        prefix = f"mailcore {ns.command}"
        return run(ns)
    except UsageError as exc:
        print(f"{prefix}: usage error: {exc}", file=sys.stderr)
        return EX_USAGE
    except ConfigError as exc:
        print(f"{prefix}: fatal: {exc}", file=sys.stderr)
        return 1
    except MailcoreError as exc:
        print(f"{prefix}: fatal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mailcore config | head` closes the pipe early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
