"""sendmail(1) command-line grammar, as Postfix's sendmail parses it.

Owns: ``SendmailArgs`` and ``parse_argv``: getopt with Postfix's option string, stopping at
the first non-option or ``--``, plus the non-getopt ``-q``; which options are honoured,
ignored or refused; the mode implied by the program name (mailq, newaliases); the checks
that reject conflicting options.
Must not: validate addresses (submit.py does, once the caller has a Submitter) or do I/O.
Invariants: an option's value is always data (``-f -oQ/tmp`` sets that sender, which then
fails validation); usage errors are SendmailExit(EX_USAGE), -XV is EX_UNAVAILABLE; a bad
-N/-V/-R value is ignored with a line in ``SendmailArgs.warnings``. Reads no parameter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mailcore.sendmail.exits import EX_UNAVAILABLE, SendmailExit, usage_error

# Postfix's getopt string: letters followed by ':' take a value.
_WITH_VALUE = frozenset("ABCFLNORVXbefhopqr")
_NO_VALUE = frozenset("GIUcimntvx")
_NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")


@dataclass(frozen=True)
class SendmailArgs:
    mode: str = "enqueue"  # enqueue mailq newaliases flush smtp daemon verify ignore
    recipients: tuple[str, ...] = ()
    sender: str | None = None  # None: the login name
    full_name: str | None = None
    extract: bool = False  # -t
    dot_ends_input: bool = True  # cleared by -i / -oi
    body_type: str = ""
    notify: str | None = None
    envid: str | None = None
    ret: str | None = None
    rewrite_context: str = "local"
    config_dir: str | None = None  # -C
    alias_database: str | None = None  # -oA
    flush_site: str | None = None  # -qR
    flush_id: str | None = None  # -qI
    queue_interval: str | None = None  # -q30m: ignored, as Postfix does
    verbose: int = 0
    warnings: tuple[str, ...] = field(default=())



def default_mode(prog: str) -> str:
    name = os.path.basename(prog)
    return {"mailq": "mailq", "newaliases": "newaliases"}.get(name, "enqueue")


def parse_notify(value: str) -> str | None:
    """sendmail -N: "never" or a comma list of success/failure/delay; None when invalid."""
    words = [w.strip().upper() for w in value.split(",") if w.strip()]
    if not words:
        return None
    if words == ["NEVER"]:
        return "NEVER"
    if any(w not in _NOTIFY_WORDS for w in words):
        return None
    return ",".join(w for w in _NOTIFY_WORDS if w in words)


def _split_options(argv: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """getopt("+...") semantics: (option, value) pairs and the operands after them."""
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-q":  # not getopt compatible: -q alone means flush
            options.append(("q", ""))
            i += 1
            continue
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            letter = arg[j]
            if letter in _WITH_VALUE:
                if j + 1 < len(arg):
                    value = arg[j + 1 :]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]  # taken as data whatever it looks like
                else:
                    raise usage_error(f"option requires an argument -- '{letter}'")
                options.append((letter, value))
                break
            if letter not in _NO_VALUE:
                raise usage_error(f"invalid option -- '{letter}'")
            options.append((letter, None))
            j += 1
        i += 1
    return options, list(argv[i:])


def _apply_b(args: SendmailArgs, value: str) -> SendmailArgs:
    modes = {"d": "daemon", "h": "ignore", "H": "ignore", "i": "newaliases", "m": "enqueue",
             "p": "mailq", "s": "smtp", "v": "verify"}  # fmt: skip
    if value[:1] not in modes:
        raise usage_error(f"unsupported: -b{value[:1]}")
    return replace(args, mode=modes[value[:1]])


def _apply_q(args: SendmailArgs, value: str) -> SendmailArgs:
    if value == "":
        return replace(args, mode="flush") if args.mode != "daemon" else args
    if value[0].isdigit():
        return replace(args, queue_interval=value)
    if value[0] == "R":
        if not value[1:]:
            raise usage_error("specify: -qRsitename")
        return replace(args, flush_site=value[1:])
    if value[0] == "I":
        if not value[1:]:
            raise usage_error("specify: -qIqueueid")
        return replace(args, flush_id=value[1:])
    raise usage_error(f"-q{value[0]} is not implemented")


def _apply_o(args: SendmailArgs, value: str) -> SendmailArgs:
    if value[:1] == "A":
        if not value[1:]:
            raise usage_error("-oA requires pathname")
        return replace(args, alias_database=value[1:])
    if value[:1] == "i":
        return replace(args, dot_ends_input=False)
    return args  # -o7, -o8, -om and every other -oX are ignored, as sendmail does


def _apply_value(args: SendmailArgs, letter: str, value: str) -> SendmailArgs:
    warn = args.warnings
    if letter in "fr":
        return replace(args, sender=value)
    if letter == "F":
        return replace(args, full_name=value)
    if letter == "B":
        if value not in ("8BITMIME", "7BIT"):
            raise usage_error("-B option needs 8BITMIME or 7BIT")
        return replace(args, body_type=value)
    if letter == "N":
        notify = parse_notify(value)
        if notify is None:
            return replace(args, warnings=(*warn, "bad -N option value -- ignored"))
        return replace(args, notify=notify)
    if letter == "V":
        if len(value) > 100:
            return replace(args, warnings=(*warn, "too long -V option value -- ignored"))
        if not value.isascii() or not value.isprintable():
            return replace(args, warnings=(*warn, "bad syntax in -V option value -- ignored"))
        return replace(args, envid=value)
    if letter == "R":
        if value.upper() in ("FULL", "HDRS"):
            return replace(args, ret=value.upper())
        return replace(args, warnings=(*warn, "bad -R option value (full or hdrs) -- ignored"))
    if letter == "X":
        if value[:1] == "V":
            raise SendmailExit(EX_UNAVAILABLE, "VERP (-XV) is not supported by mailcore")
        raise usage_error(f"unsupported: -X{value[:1]}")
    if letter == "C":
        path = value[: -len("/main.cf")] if value.endswith("/main.cf") else value
        return replace(args, config_dir=path or "/")
    handlers: dict[str, Callable[[SendmailArgs, str], SendmailArgs]] = {
        "b": _apply_b, "q": _apply_q, "o": _apply_o,
    }  # fmt: skip
    if letter in handlers:
        return handlers[letter](args, value)
    return args  # -A -L -O -e -h -p: accepted and ignored, as Postfix does


def _apply_flag(args: SendmailArgs, letter: str) -> SendmailArgs:
    if letter == "n":
        raise usage_error("-n option not supported")
    if letter == "t":
        return replace(args, extract=True)
    if letter == "i":
        return replace(args, dot_ends_input=False)
    if letter == "G":
        return replace(args, rewrite_context="remote")
    if letter == "I":
        return replace(args, mode="newaliases")
    if letter == "v":
        return replace(args, verbose=args.verbose + 1)
    return args  # -U -c -m -x: ignored


def parse_argv(argv: Sequence[str], prog: str = "sendmail") -> SendmailArgs:
    """Parse sendmail's command line (without argv[0]); SendmailExit on usage errors."""
    options, operands = _split_options(argv)
    args = SendmailArgs(mode=default_mode(prog))
    for letter, value in options:
        args = _apply_flag(args, letter) if value is None else _apply_value(args, letter, value)
    args = replace(args, recipients=tuple(operands))
    _check_conflicts(args)
    return args


def _check_conflicts(args: SendmailArgs) -> None:
    if args.extract and args.mode != "enqueue":
        raise usage_error("-t can be used only in delivery mode")
    if args.flush_site and args.mode != "enqueue":
        raise usage_error("-qR can be used only in delivery mode")
    if args.flush_id and args.mode != "enqueue":
        raise usage_error("-qI can be used only in delivery mode")
    if args.recipients and (args.flush_site or args.flush_id):
        raise usage_error("flush requires no recipient")
    what = {"mailq": "display queue mode", "flush": "flush queue mode",
            "newaliases": "alias initialization mode", "smtp": "stand-alone mode",
            "daemon": "daemon mode"}  # fmt: skip
    if args.recipients and args.mode in what:
        raise usage_error(f"{what[args.mode]} requires no recipient")
