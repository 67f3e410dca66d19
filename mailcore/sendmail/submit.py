"""sendmail's enqueue path: reading the message and writing the maildrop file.

Owns: ``InputLimits``, reading standard input as sendmail does (leading "From " lines
dropped, line-ending repair, a lone "." ending input unless -i, the size limit), who runs
the command (``Submitter``), the envelope sender and recipients, and ``submit``.
Must not: touch the queue database or cleanup; pickup feeds maildrop files into cleanup.
Invariants: a maildrop file appears only when the whole message was read and every
recipient validated; the writer is aborted on every failure; duplicate recipients are
written once. Parameters (via InputLimits): message_size_limit, header_size_limit,
smtpd_recipient_limit (cap on -t recipients), sendmail_fix_line_endings.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mailcore.address import AddressError
from mailcore.maildrop import DropEnvelope, DropRecipient, MaildropError, MaildropWriter
from mailcore.sendmail.addrlist import (
    recipients_from_argument,
    sender_from_option,
    validate_address,
)
from mailcore.sendmail.args import SendmailArgs
from mailcore.sendmail.exits import (
    EX_DATAERR,
    EX_NOUSER,
    EX_OSERR,
    EX_TEMPFAIL,
    SendmailExit,
    usage_error,
)
from mailcore.sendmail.extract import HeaderExtractor, extracted_recipients


@dataclass(frozen=True)
class InputLimits:
    message_size_limit: int = 10240000  # 0: unlimited
    header_size_limit: int = 102400
    extract_limit: int = 1000  # at most this many -t recipients
    fix_line_endings: str = "always"  # always | strict | never


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
            raise usage_error(f"bad -f sender address {args.sender!r}: {exc}") from None
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
            raise usage_error("Recipient addresses must be specified on the command line "
                         "or via the -t option")
        extractor = HeaderExtractor(limits.header_size_limit) if args.extract else None
        try:
            copy_message(stream, writer.write_line, limits,
                         dot_ends_input=args.dot_ends_input, extractor=extractor)
        except OSError as exc:
            raise SendmailExit(EX_DATAERR, f"error reading input: {exc.strerror}") from None
        if extractor is not None:
            recipients += extracted_recipients(extractor, limits.extract_limit)
            if not recipients:
                raise usage_error("No recipient addresses found in message header")
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
