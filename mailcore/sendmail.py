"""The sendmail command: argv parsing as Postfix's sendmail(1) does it, reading the message,
``-t`` recipient extraction, and writing the maildrop file.

Owns: the option grammar (getopt with Postfix's option string, stopping at the first
non-option or ``--``, plus the non-getopt ``-q``), which options are honoured, ignored or
refused, the exit statuses (sysexits.h), RFC 5322 address lists (command-line arguments are
parsed like a To: header, as Postfix does), line-ending repair, and ``MaildropSink`` (the
smtpd message-sink protocol writing to maildrop, for ``sendmail -bs``).

Must not: touch the queue database or cleanup; pickup feeds maildrop files into cleanup.

Invariants: an option's value is always data (``-f -oQ/tmp`` sets that sender, which then
fails validation); every address, from argv or from headers, goes through
mailcore.address.parse_address and is_hostile_local; a maildrop file appears only when the
whole message was read and every recipient validated; nothing is appended to bare local
parts here (cleanup's rewriting does that). Parameters: queue_directory,
message_size_limit, header_size_limit, smtpd_recipient_limit (cap on -t recipients),
sendmail_fix_line_endings.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from mailcore.address import AddressError, is_hostile_local, parse_address
from mailcore.maildrop import DropEnvelope, DropRecipient, MaildropError, MaildropWriter
from mailcore.model import Envelope
from mailcore.queue import QueueWriteError
from mailcore.queueid import QueueIdAllocator

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_TEMPFAIL = 75

# Postfix's getopt string: letters followed by ':' take a value.
_WITH_VALUE = frozenset("ABCFLNORVXbefhopqr")
_NO_VALUE = frozenset("GIUcimntvx")
_NOTIFY_WORDS = ("SUCCESS", "FAILURE", "DELAY")
RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
RESENT_HEADERS = frozenset({"resent-to", "resent-cc", "resent-bcc"})


class SendmailExit(Exception):
    """End the command with ``status``; ``message`` goes to standard error as fatal."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


# ------------------------------------------------------------------------- argv grammar


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


def _usage(message: str) -> SendmailExit:
    return SendmailExit(EX_USAGE, message)


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
                    raise _usage(f"option requires an argument -- '{letter}'")
                options.append((letter, value))
                break
            if letter not in _NO_VALUE:
                raise _usage(f"invalid option -- '{letter}'")
            options.append((letter, None))
            j += 1
        i += 1
    return options, list(argv[i:])


def _apply_b(args: SendmailArgs, value: str) -> SendmailArgs:
    modes = {"d": "daemon", "h": "ignore", "H": "ignore", "i": "newaliases", "m": "enqueue",
             "p": "mailq", "s": "smtp", "v": "verify"}  # fmt: skip
    if value[:1] not in modes:
        raise _usage(f"unsupported: -b{value[:1]}")
    return replace(args, mode=modes[value[:1]])


def _apply_q(args: SendmailArgs, value: str) -> SendmailArgs:
    if value == "":
        return replace(args, mode="flush") if args.mode != "daemon" else args
    if value[0].isdigit():
        return replace(args, queue_interval=value)
    if value[0] == "R":
        if not value[1:]:
            raise _usage("specify: -qRsitename")
        return replace(args, flush_site=value[1:])
    if value[0] == "I":
        if not value[1:]:
            raise _usage("specify: -qIqueueid")
        return replace(args, flush_id=value[1:])
    raise _usage(f"-q{value[0]} is not implemented")


def _apply_o(args: SendmailArgs, value: str) -> SendmailArgs:
    if value[:1] == "A":
        if not value[1:]:
            raise _usage("-oA requires pathname")
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
            raise _usage("-B option needs 8BITMIME or 7BIT")
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
        raise _usage(f"unsupported: -X{value[:1]}")
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
        raise _usage("-n option not supported")
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
        raise _usage("-t can be used only in delivery mode")
    if args.flush_site and args.mode != "enqueue":
        raise _usage("-qR can be used only in delivery mode")
    if args.flush_id and args.mode != "enqueue":
        raise _usage("-qI can be used only in delivery mode")
    if args.recipients and (args.flush_site or args.flush_id):
        raise _usage("flush requires no recipient")
    what = {"mailq": "display queue mode", "flush": "flush queue mode",
            "newaliases": "alias initialization mode", "smtp": "stand-alone mode",
            "daemon": "daemon mode"}  # fmt: skip
    if args.recipients and args.mode in what:
        raise _usage(f"{what[args.mode]} requires no recipient")


# ------------------------------------------------------------------ RFC 5322 address lists

_SPECIALS = "<>@,;:.\\\"[]()"


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, text) tokens; comments and white space are dropped. kinds: atom, quoted,
    literal, special."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif ch in "\"[":
            close = '"' if ch == '"' else "]"
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                what = "quoted string" if ch == '"' else "domain literal"
                raise AddressError(f"unterminated {what}")
            yield ("quoted" if ch == '"' else "literal"), text[i : j + 1]
            i = j + 1
        elif ch in _SPECIALS:
            yield "special", ch
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            yield "atom", text[i:j]
            i = j


def _render(tokens: list[tuple[str, str]]) -> str:
    # Adjacent words keep a space between them, so a phrase without an address fails
    # validation instead of turning into a glued-together local part.
    out = ""
    prev_word = False
    for kind, text in tokens:
        word = kind != "special"
        if word and prev_word:
            out += " "
        out += text
        prev_word = word
    return out


def _strip_route(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # obs-route "<@a,@b:user@c>": keep what follows the colon.
    if tokens[:1] == [("special", "@")] and ("special", ":") in tokens:
        return tokens[tokens.index(("special", ":")) + 1 :]
    return tokens


def parse_address_list(text: str) -> list[str]:
    """The addr-specs of an RFC 5322 address list (display names, comments, groups and
    routes dropped), in external form; AddressError on broken syntax."""
    found: list[str] = []
    current: list[tuple[str, str]] = []
    angle: list[tuple[str, str]] | None = None
    used_angle = False
    for kind, tok in _tokens(text):
        if angle is not None:
            if (kind, tok) == ("special", ">"):
                if angle:
                    found.append(_render(_strip_route(angle)))
                angle, used_angle, current = None, True, []
            else:
                angle.append((kind, tok))
        elif (kind, tok) == ("special", "<"):
            angle = []
        elif kind == "special" and tok in ",;":
            if current and not used_angle:
                found.append(_render(current))
            current, used_angle = [], False
        elif (kind, tok) == ("special", ":") and not used_angle:
            current = []  # a group's display name
        elif not used_angle:
            current.append((kind, tok))
    if angle is not None:
        raise AddressError("missing '>'")
    if current and not used_angle:
        found.append(_render(current))
    return found


# ------------------------------------------------------------------- address validation


def validate_address(text: str, *, for_sender: bool = False) -> str:
    """The canonical form of one address; AddressError when refused."""
    address = parse_address(text, smtputf8=True, for_sender=for_sender)
    hostile = is_hostile_local(address.local)
    if hostile:
        raise AddressError(hostile)
    return address.text


def sender_from_option(value: str) -> str:
    """-f value: the first address of an RFC 5322 list, "" for the null sender."""
    if value.strip() in ("", "<>"):
        return ""
    addresses = parse_address_list(value)
    if not addresses:
        # "<>" inside a phrase, e.g. -f 'Nobody <>'
        return ""
    return validate_address(addresses[0], for_sender=True)


def recipients_from_argument(value: str) -> list[str]:
    addresses = parse_address_list(value)
    if not addresses:
        raise AddressError("no address found")
    return [validate_address(a) for a in addresses]


# ---------------------------------------------------------------------- message reading


@dataclass(frozen=True)
class InputLimits:
    message_size_limit: int = 10240000  # 0: unlimited
    header_size_limit: int = 102400
    extract_limit: int = 1000  # at most this many -t recipients
    fix_line_endings: str = "always"  # always | strict | never


class HeaderExtractor:
    """Collects To/Cc/Bcc (or, once a Resent- header is seen, only Resent-To/Cc/Bcc)
    addresses from the primary header section, as Postfix's sendmail -t does."""

    def __init__(self, header_size_limit: int):
        self._limit = header_size_limit
        self._current: list[bytes] = []
        self._size = 0
        self.in_headers = True
        self.normal: list[str] = []
        self.resent: list[str] = []
        self.resent_seen = False

    def feed(self, line: bytes) -> None:
        if not self.in_headers:
            return
        if line[:1] in (b" ", b"\t") and self._current:
            self._add(line)
            return
        self._finish()
        name, colon, _ = line.partition(b":")
        if colon and name.rstrip(b" \t") and all(33 <= c <= 126 for c in name.rstrip(b" \t")):
            self._add(line)
        else:
            self.in_headers = False

    def _add(self, line: bytes) -> None:
        self._size += len(line) + 1
        if self._size > self._limit:
            raise SendmailExit(EX_DATAERR, "unable to extract recipients: "
                               "message header length exceeds safety limit")
        self._current.append(line)

    def _finish(self) -> None:
        if not self._current:
            return
        text = b"\n".join(self._current).decode("utf-8", "surrogateescape")
        self._current, self._size = [], 0
        name, _, value = text.partition(":")
        name = name.strip().lower()
        if name in RESENT_HEADERS:
            self.resent_seen = True
            target = self.resent
        elif name in RECIPIENT_HEADERS and not self.resent_seen:
            target = self.normal
        else:
            return
        try:
            target.extend(parse_address_list(value))
        except AddressError as exc:
            raise SendmailExit(EX_DATAERR, f"unable to extract recipients from {name}: "
                               f"{exc}") from None

    def close(self) -> list[str]:
        self._finish()
        self.in_headers = False
        return self.resent if self.resent_seen else self.normal


def input_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """Lines with their LF removed; SendmailExit past ``limit`` bytes (0: no limit)."""
    total = 0
    while True:
        line = stream.readline(limit - total + 2 if limit else -1)
        if not line:
            return
        total += len(line)
        if limit and total > limit:
            raise SendmailExit(EX_DATAERR, "message file too big (message_size_limit)")
        yield line[:-1] if line.endswith(b"\n") else line


def copy_message(stream: BinaryIO, sink: Callable[[bytes], None], limits: InputLimits, *,
                 dot_ends_input: bool, extractor: HeaderExtractor | None) -> None:
    """Read the message from ``stream`` into ``sink`` line by line, as sendmail does:
    leading "From " lines dropped, CRs stripped per sendmail_fix_line_endings, a lone "."
    ending input unless -i."""
    strip_cr = {"always": True, "never": False}.get(limits.fix_line_endings)
    skip_from = True
    for line in input_lines(stream, limits.message_size_limit):
        if strip_cr is None:  # strict: the first line decides
            strip_cr = line.endswith(b"\r")
        if skip_from:
            if line.lstrip(b">").startswith(b"From "):
                continue
            skip_from = False
        if strip_cr:
            line = line.rstrip(b"\r")
        if dot_ends_input and line == b".":
            break
        if extractor is not None:
            extractor.feed(line)
        sink(line)


# ------------------------------------------------------------------------- submission


@dataclass(frozen=True)
class Submitter:
    """Who runs the command: uid, login name and full name (from NAME or GECOS)."""

    uid: int
    login: str
    gecos_name: str

    @classmethod
    def current(cls) -> Submitter:
        uid = os.getuid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise SendmailExit(EX_OSERR, f"no login name found for user ID {uid}") from None
        gecos = entry.pw_gecos.split(",")[0].replace("&", entry.pw_name.capitalize())
        return cls(uid, entry.pw_name, gecos)


def resolve_envelope_parties(args: SendmailArgs, who: Submitter) -> tuple[str, list[str]]:
    """(sender, command-line recipients), validated; SendmailExit when refused."""
    if args.sender is not None:
        try:
            sender = sender_from_option(args.sender)
        except AddressError as exc:
            raise _usage(f"bad -f sender address {args.sender!r}: {exc}") from None
    else:
        try:
            sender = validate_address(who.login, for_sender=True)
        except AddressError as exc:
            raise SendmailExit(EX_OSERR, f"login name {who.login!r}: {exc}") from None
    recipients: list[str] = []
    for arg in args.recipients:
        try:
            recipients.extend(recipients_from_argument(arg))
        except AddressError as exc:
            raise SendmailExit(EX_NOUSER, f"bad recipient address {arg!r}: {exc}") from None
    return sender, recipients


def _extracted(extractor: HeaderExtractor, limit: int) -> list[str]:
    found = extractor.close()
    if limit and len(found) > limit:
        raise SendmailExit(EX_DATAERR, f"too many recipients in message headers "
                           f"({len(found)}, limit {limit})")
    valid = []
    for text in found:
        try:
            valid.append(validate_address(text))
        except AddressError as exc:
            raise SendmailExit(EX_NOUSER, f"bad recipient address {text!r} in message "
                               f"header: {exc}") from None
    return valid


def _unique(addresses: list[str], notify: str | None) -> tuple[DropRecipient, ...]:
    seen: dict[str, DropRecipient] = {}
    for address in addresses:
        seen.setdefault(address, DropRecipient(address, address, notify))
    return tuple(seen.values())


def submit(args: SendmailArgs, stream: BinaryIO, writer: MaildropWriter,
           limits: InputLimits, who: Submitter, *, now: float | None = None,
           environ: dict[str, str] | None = None) -> str:
    """Read the message into ``writer`` and commit it; returns the maildrop file name.
    The writer is aborted on every failure."""
    try:
        sender, recipients = resolve_envelope_parties(args, who)
        if not recipients and not args.extract:
            raise _usage("Recipient addresses must be specified on the command line "
                         "or via the -t option")
        extractor = HeaderExtractor(limits.header_size_limit) if args.extract else None
        try:
            copy_message(stream, writer.write_line, limits,
                         dot_ends_input=args.dot_ends_input, extractor=extractor)
        except OSError as exc:
            raise SendmailExit(EX_DATAERR, f"error reading input: {exc.strerror}") from None
        if extractor is not None:
            recipients += _extracted(extractor, limits.extract_limit)
            if not recipients:
                raise _usage("No recipient addresses found in message header")
        env = environ if environ is not None else dict(os.environ)
        full_name = args.full_name if args.full_name is not None else (
            env.get("NAME") or who.gecos_name)  # fmt: skip
        envelope = DropEnvelope(
            sender=sender, recipients=_unique(recipients, args.notify),
            arrival_time=time.time() if now is None else now, uid=who.uid,
            full_name=full_name, envid=args.envid, ret=args.ret, body_type=args.body_type,
            rewrite_context=args.rewrite_context,
            flags=("extract",) if args.extract else (),
        )  # fmt: skip
        return writer.commit(envelope)
    except MaildropError as exc:
        raise SendmailExit(EX_TEMPFAIL, str(exc)) from None
    finally:
        writer.abort()  # a no-op after a successful commit


# ------------------------------------------------------------------ sendmail -bs support


class MaildropSinkWriter:
    """The writer smtpd feeds during ``sendmail -bs``: lines go into a maildrop file."""

    def __init__(self, writer: MaildropWriter, size_limit: int):
        self.drop = writer
        self._limit = size_limit
        self.too_big = False

    async def write_line(self, line: bytes) -> None:
        self.write_line_now(line)

    def write_line_now(self, line: bytes) -> None:
        if self.too_big:
            return
        if self._limit and self.drop.content_size + len(line) + 1 > self._limit:
            self.too_big = True
            return
        self.drop.write_line(line)

    def abort(self) -> None:
        self.drop.abort()


class MaildropSink:
    """smtpd's MessageSink protocol for ``sendmail -bs``: each accepted message becomes a
    maildrop file (its name is the queue ID the client sees), later fed in by pickup."""

    def __init__(self, maildrop_dir: Path, who: Submitter, size_limit: int = 0):
        self._dir = maildrop_dir
        self._who = who
        self._limit = size_limit
        self._ids = QueueIdAllocator()

    def new_queue_id(self) -> str:
        return self._ids.allocate()

    async def open(self, *, queue_id: str, sender: str, local_submission: bool,
                   first_headers: list[bytes], client: object = None,
                   recipient: str = "") -> MaildropSinkWriter:
        writer = MaildropSinkWriter(MaildropWriter(self._dir, allocator=self._ids),
                                    self._limit)
        for line in first_headers:
            writer.write_line_now(line)
        return writer

    async def enqueue(self, writer: MaildropSinkWriter, envelope: Envelope,
                      queue_id: str) -> str:
        drop = DropEnvelope(
            sender=envelope.sender,
            recipients=tuple(DropRecipient(r.address, r.orig_rcpt, r.notify)
                             for r in envelope.recipients),
            arrival_time=envelope.arrival_time, uid=self._who.uid,
            full_name=self._who.gecos_name, envid=envelope.envid, ret=envelope.ret,
            body_type=envelope.body_type if envelope.body_type != "BINARYMIME" else "",
            flags=("smtp",),
        )  # fmt: skip
        try:
            return await asyncio.to_thread(writer.drop.commit, drop, queue_id)
        except MaildropError as exc:
            raise QueueWriteError(str(exc)) from exc
