"""Command-line glue for local submission and the queue listing: ``sendmail`` / ``mailq``
entry points and the ``mailcore sendmail`` subcommand (``mailcore queue`` lives in
cli_queue.py).

Owns: turning a parsed sendmail command into work (submission, listing, newaliases, the
flush explanation, -bs), standard error messages in Postfix's ``prog: fatal: text`` form and
the exit status (sysexits.h; a configuration that cannot be loaded gives EX_TEMPFAIL, as
Postfix's sendmail does for any fatal configuration error).

Must not: parse sendmail options (mailcore.sendmail does) or format the listing
(mailcore.mailq does).

Invariants: ``mailcore sendmail ARGS`` takes ARGS exactly as the sendmail command would: the
subparser hands the raw words over without argparse interpreting any of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from mailcore import sendmail as sm
from mailcore.config import Config, load_config
from mailcore.errors import MailcoreError
from mailcore.maildrop import MaildropError, MaildropWriter
from mailcore.mailq import iter_listing, write_listing
from mailcore.queue import make_queue_dirs, queue_paths


def _stderr(prog: str, level: str, message: str, err: TextIO) -> None:
    print(f"{prog}: {level}: {message}", file=err)


def _limits(config: Config) -> sm.InputLimits:
    return sm.InputLimits(
        message_size_limit=config.get_size("message_size_limit"),
        header_size_limit=config.get_size("header_size_limit"),
        extract_limit=config.get_int("smtpd_recipient_limit"),
        fix_line_endings=config.get("sendmail_fix_line_endings"),
    )


def _maildrop_dir(config: Config) -> Path:
    paths = queue_paths(config.get_path("queue_directory"))
    if not paths.maildrop.is_dir():
        try:
            make_queue_dirs(paths)
        except OSError as exc:
            raise sm.SendmailExit(sm.EX_CANTCREAT,
                                  f"cannot create {paths.maildrop}: {exc.strerror}") from None
    return paths.maildrop


def do_submit(args: sm.SendmailArgs, config: Config, stdin: BinaryIO) -> str:
    if config.get("sendmail_fix_line_endings") not in ("always", "strict", "never"):
        raise sm.SendmailExit(sm.EX_USAGE, "invalid sendmail_fix_line_endings value: "
                              + config.get("sendmail_fix_line_endings"))
    who = sm.Submitter.current()
    directory = _maildrop_dir(config)
    try:
        writer = MaildropWriter(directory)
    except MaildropError as exc:
        raise sm.SendmailExit(sm.EX_CANTCREAT, str(exc)) from None
    return sm.submit(args, stdin, writer, _limits(config), who)


def do_mailq(config: Config, out: TextIO, *, as_json: bool = False) -> int:
    try:
        write_listing(iter_listing(config.get_path("queue_directory")), out, as_json=as_json,
                      empty_address=config.get("empty_address_recipient") or "MAILER-DAEMON")
    except sqlite3.Error as exc:
        raise sm.SendmailExit(sm.EX_TEMPFAIL, f"cannot read the queue: {exc}") from None
    return sm.EX_OK


def do_newaliases(args: sm.SendmailArgs, config: Config) -> int:
    try:
        cli_maps: Any = importlib.import_module("mailcore.cli_maps")
    except ImportError:
        raise sm.SendmailExit(sm.EX_UNAVAILABLE, "newaliases is not available: this mailcore "
                              "has no alias table support (mailcore.cli_maps)") from None
    parser = argparse.ArgumentParser(prog="newaliases")
    cli_maps.add_alias_parser(parser.add_subparsers(dest="command"))
    files = [args.alias_database] if args.alias_database else []
    if not files and not config.get_list("alias_database"):
        return sm.EX_OK  # Postfix: nothing to do when alias_database is empty
    return int(cli_maps.run_alias(parser.parse_args(["alias", *files]), config))


def do_stdio_smtp(config: Config) -> int:
    """``-bs``: an SMTP session on stdin/stdout whose messages go into the maildrop."""
    from mailcore.server import serve_stdio

    sink = sm.MaildropSink(_maildrop_dir(config), sm.Submitter.current(),
                           config.get_size("message_size_limit"))
    return asyncio.run(serve_stdio(config, sink))


def _flush(config: Config, prog: str, out: TextIO, err: TextIO, *, site: str | None = None,
           queue_id: str | None = None) -> int:
    """sendmail -q, -qRsite, -qIid: ask the running server, as postqueue -f/-s/-i does."""
    from mailcore.cli_ops import flush_queue

    status = flush_queue(config, site=site, queue_id=queue_id, prog=prog, out=out, err=err)
    return sm.EX_OK if status == 0 else sm.EX_UNAVAILABLE


def dispatch(args: sm.SendmailArgs, config: Config, *, stdin: BinaryIO, out: TextIO,
             err: TextIO, prog: str) -> int:
    for warning in args.warnings:
        _stderr(prog, "warning", warning, err)
    if args.queue_interval is not None and args.mode != "daemon":
        return sm.EX_OK  # -q30m: Postfix ignores queue run intervals and exits
    if args.mode == "enqueue" and (args.flush_site or args.flush_id):
        return _flush(config, prog, out, err, site=args.flush_site, queue_id=args.flush_id)
    if args.mode == "enqueue":
        do_submit(args, config, stdin)
        return sm.EX_OK
    if args.mode == "mailq":
        return do_mailq(config, out)
    if args.mode == "flush":
        return _flush(config, prog, out, err)
    if args.mode == "newaliases":
        return do_newaliases(args, config)
    if args.mode == "smtp":
        return do_stdio_smtp(config)
    if args.mode == "daemon":
        raise sm.SendmailExit(sm.EX_UNAVAILABLE, "start the server with 'mailcore serve'")
    if args.mode == "verify":
        raise sm.SendmailExit(sm.EX_UNAVAILABLE, "-bv (address verification) is not "
                              "supported by mailcore")
    return sm.EX_OK  # -bh, -bH


def run_sendmail_argv(argv: Sequence[str], prog: str,
                      load: Callable[[str | None], Config], *, stdin: BinaryIO | None = None,
                      out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The whole sendmail command; every failure becomes a message and a sysexits status."""
    out = out or sys.stdout
    err = err or sys.stderr
    name = os.path.basename(prog)
    if not name or name.endswith(".py"):  # python -m mailcore.cli_local
        name = "sendmail"
    try:
        args = sm.parse_argv(argv, prog=name)
        try:
            config = load(args.config_dir)
        except MailcoreError as exc:
            raise sm.SendmailExit(sm.EX_TEMPFAIL, str(exc)) from None
        return dispatch(args, config, stdin=stdin or sys.stdin.buffer, out=out, err=err,
                        prog=name)
    except sm.SendmailExit as exc:
        _stderr(name, "fatal", exc.message, err)
        return exc.status
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return sm.EX_OK
    except MailcoreError as exc:
        _stderr(name, "fatal", str(exc), err)
        return sm.EX_TEMPFAIL
    except Exception as exc:  # a traceback helps nobody who ran sendmail from a script
        _stderr(name, "fatal", f"internal error: {type(exc).__name__}: {exc}", err)
        return sm.EX_SOFTWARE


def _loader(fallback: Callable[[], Config] | None) -> Callable[[str | None], Config]:
    def load(directory: str | None) -> Config:
        if directory is not None or fallback is None:
            return load_config(Path(directory) if directory else None)
        return fallback()

    return load


# --------------------------------------------------------------- mailcore subcommands


def _raw_words(parser: argparse.ArgumentParser, args: Sequence[str] | None,
               namespace: argparse.Namespace | None = None
               ) -> tuple[argparse.Namespace, list[str]]:
    # sendmail's grammar is getopt's, not argparse's: keep every word for mailcore.sendmail.
    namespace = namespace or argparse.Namespace()
    namespace.sendmail_argv = list(args or [])
    return namespace, []


def add_sendmail_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sendmail", add_help=False, help="submit mail like sendmail(1); -bp lists the queue",
        description="The sendmail-compatible command; takes sendmail's options.")
    parser.parse_known_args = (  # type: ignore[method-assign]
        lambda args=None, namespace=None: _raw_words(parser, args, namespace))
    parser.set_defaults(command="sendmail")
    return parser


def run_sendmail(ns: argparse.Namespace, load_config: Callable[[], Config]) -> int:
    return run_sendmail_argv(getattr(ns, "sendmail_argv", []), "sendmail",
                             _loader(load_config))


# ----------------------------------------------------------------- console entry points


def sendmail_main(argv: Sequence[str] | None = None) -> int:
    """``sendmail`` (also ``mailq`` / ``newaliases`` when installed under those names)."""
    words = list(sys.argv[1:] if argv is None else argv)
    return run_sendmail_argv(words, sys.argv[0] or "sendmail", _loader(None))


def mailq_main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    return run_sendmail_argv(words, "mailq", _loader(None))


if __name__ == "__main__":
    sys.exit(sendmail_main())
