"""pipe(8): delivery to an external command named in master.cf (``flags=… user=… argv=…``).

Owns: expanding the argv macros (``$sender``, ``${recipient}``, ``$(nexthop)``, …; an argument
that names a recipient macro becomes one argument per recipient), the message copy that feeds
the command's stdin (flags D R O F . > B and eol=), running the command with the user= rights,
a filtered environment and TRANSPORT_time_limit, and turning its exit status and output into
per-recipient results as Postfix's pipe_command() and sys_exits table do.

Must not: run anything through a shell (argv is executed directly, so a sender like
``"x;touch pwn"@ext`` is one inert argument), expand a macro's value again, hold the whole
message in memory, block the event loop, or change queue state.

Invariants: every recipient of a request gets the same outcome, as in Postfix; a command that
is still running when the delivery ends (time limit, cancellation, error) is killed with its
whole process group; captured output is bounded (OUTPUT_LIMIT bytes) and made printable.

Parameters: TRANSPORT_time_limit (command_time_limit), export_environment,
recipient_delimiter, owner_request_special, double_bounce_sender, mail_owner.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, field

from mailcore.config import Config
from mailcore.config.master import PipeSpec, Service
from mailcore.delivery import ContentSource, content_lines
from mailcore.errors import ConfigError
from mailcore.model import (
    BOUNCED,
    DEFERRED,
    SENT,
    Delays,
    DeliveryRequest,
    DeliveryResult,
    RecipientRef,
    RecipientResult,
)
from mailcore.status import SYSEXITS, sanitize

OUTPUT_LIMIT = 2048  # bytes of command output kept for the log and the bounce
DEFAULT_PATH = "/usr/bin:/bin"  # Postfix resets PATH to the C library's _PATH_DEFPATH
MAILER_DAEMON = "MAILER-DAEMON"
_WRITE_BATCH = 65536
_DSN_CLASSES = "245"
_CONFIG_ERROR = ("4.3.5", "mail system configuration error")

EX_TEMPFAIL = 75

RECIPIENT_MACROS = frozenset({"recipient", "original_recipient", "user", "extension",
                              "mailbox", "domain"})
MESSAGE_MACROS = frozenset({"sender", "nexthop", "size", "queue_id", "client_address",
                            "client_hostname", "client_port", "client_protocol",
                            "client_helo", "sasl_method", "sasl_username", "sasl_sender"})
MACROS = RECIPIENT_MACROS | MESSAGE_MACROS
# request attribute (as cleanup stores it) behind each client macro
_ATTR_MACROS = {"client_address": "client_address", "client_hostname": "client_name",
                "client_port": "client_port", "client_protocol": "protocol_name",
                "client_helo": "helo_name", "sasl_method": "sasl_method",
                "sasl_username": "sasl_username", "sasl_sender": "sasl_sender"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class Outcome:
    """What happened to the whole request: SENT, DEFERRED or BOUNCED, status and reason."""

    status: str
    dsn: str
    reason: str


# --- address forms ------------------------------------------------------------------------

def internal_form(address: str) -> str:
    """Postfix's internal (unquoted) form of an address mailcore stores quoted.

    Quotes and backslashes are removed from the local part only; the text after the last
    unquoted ``@`` is kept as it is.
    """
    out: list[str] = []
    at: int | None = None
    quoted, index = False, 0
    while index < len(address):
        char = address[index]
        index += 1
        if char == '"':
            quoted = not quoted
            continue
        if char == "\\" and index < len(address):
            char, index = address[index], index + 1
        elif char == "@" and not quoted:
            at = index - 1
            out.append(char)
            break
        out.append(char)
    if at is None:
        return "".join(out)
    return "".join(out) + address[index:]


_RFC822_SPECIALS = frozenset('()<>@,;:\\"[]')


def _is_dot_string(local: str) -> bool:
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return not any(c == " " or c in _RFC822_SPECIALS or ord(c) < 32 or ord(c) == 127
                   for c in local)


def quote_822_local(address: str) -> str:
    """Quote the local part (left of the last ``@``) of an internal-form address when it is
    not an RFC 822 dot-string; 8-bit characters pass unchanged."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if _is_dot_string(local):
        return address
    escaped = "".join("\\" + c if c in '"\\\r' else c for c in local)
    return f'"{escaped}"' + (f"@{domain}" if at else "")


def fold_address(address: str, *, user: bool, host: bool) -> str:
    """Flags u and h: lower-case the part left and/or right of the last ``@``."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower() if user else address
    return f"{local.lower() if user else local}@{domain.lower() if host else domain}"


# --- argv templates -----------------------------------------------------------------------

@dataclass(frozen=True)
class ArgTemplate:
    """One argv= word: literal text and macro names, in order (macro entries are
    ``(True, name)``); ``recipient_macros`` says whether it repeats per recipient."""

    parts: tuple[tuple[bool, str], ...]
    recipient_macros: frozenset[str]


def parse_arg(word: str, *, file: str | None = None, line: int | None = None) -> ArgTemplate:
    """Parse ``$name``, ``${name}``, ``$(name)`` and ``$$`` as Postfix's mac_parse does."""
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    index = 0
    while index < len(word):
        char = word[index]
        if char != "$":
            literal.append(char)
            index += 1
            continue
        if word[index + 1:index + 2] == "$":
            literal.append("$")
            index += 2
            continue
        name, index = _macro_name(word, index + 1, file, line)
        if literal:
            parts.append((False, "".join(literal)))
            literal = []
        parts.append((True, name))
    if literal:
        parts.append((False, "".join(literal)))
    names = frozenset(text for is_macro, text in parts if is_macro)
    return ArgTemplate(tuple(parts), names & RECIPIENT_MACROS)


def _macro_name(word: str, index: int, file: str | None, line: int | None) -> tuple[str, int]:
    opener = word[index:index + 1]
    if opener in ("{", "("):
        closer = "}" if opener == "{" else ")"
        end = word.find(closer, index + 1)
        if end < 0:
            raise ConfigError(f'pipe: truncated macro reference in argv word "{word}"',
                              file=file, line=line)
        name, index = word[index + 1:end], end + 1
    else:
        end = index
        while end < len(word) and word[end] in _NAME_CHARS:
            end += 1
        name, index = word[index:end], end
    if not name:
        raise ConfigError(f'pipe: empty macro name in argv word "{word}"', file=file, line=line)
    if name not in MACROS:
        raise ConfigError(f'pipe: unknown macro name "{name}" in argv word "{word}"; known: '
                          + ", ".join(sorted(MACROS)), file=file, line=line)
    return name, index


@dataclass(frozen=True)
class Splitter:
    """recipient_delimiter as Postfix's split_addr applies it to ${user} and ${extension}."""

    delimiters: str
    owner_request_special: bool = True
    reserved: tuple[str, ...] = ("postmaster", MAILER_DAEMON.lower(), "double-bounce")

    def split(self, local: str) -> tuple[str, str]:
        lowered = local.lower()
        if not self.delimiters or lowered in self.reserved:
            return local, ""
        if "-" in self.delimiters and self.owner_request_special and (
                lowered.startswith("owner-")
                or (len(lowered) > 8 and lowered.endswith("-request"))):
            return local, ""
        cut = next((i for i, c in enumerate(local) if c in self.delimiters), len(local))
        if cut in (0, len(local)):
            return local, ""
        return local[:cut], local[cut + 1:]


def recipient_values(address: str, orig: str, names: frozenset[str], flags: str,
                     splitter: Splitter) -> dict[str, str] | None:
    """The recipient macros one argument uses; None when ${user} would be empty (Postfix then
    leaves this recipient's argument out)."""
    fold = {"user": "u" in flags, "host": "h" in flags}
    internal = internal_form(address)

    def morph(text: str) -> str:  # $recipient, $original_recipient: q then fold
        return fold_address(quote_822_local(text) if "q" in flags else text, **fold)

    folded = fold_address(internal, **fold)
    local, at, domain = folded.rpartition("@")
    if not at:
        local, domain = folded, ""
    user, extension = splitter.split(local)
    if "user" in names and not user:
        return None
    values = {"mailbox": local, "domain": domain, "user": user, "extension": extension}
    if "recipient" in names:
        values["recipient"] = morph(internal)
    if "original_recipient" in names:
        values["original_recipient"] = morph(internal_form(orig)) if orig else ""
    return values


def expand_argv(templates: Sequence[ArgTemplate], message: Mapping[str, str],
                recipients: Sequence[RecipientRef], flags: str,
                splitter: Splitter) -> list[str]:
    """The command's argv: message macros once, recipient macros once per recipient."""
    argv: list[str] = []
    for template in templates:
        if not template.recipient_macros:
            argv.append(_render(template, message))
            continue
        for rcpt in recipients:
            values = recipient_values(rcpt.address, rcpt.orig_rcpt or "",
                                      template.recipient_macros, flags, splitter)
            if values is not None:
                argv.append(_render(template, {**message, **values}))
    return argv


def _render(template: ArgTemplate, values: Mapping[str, str]) -> str:
    # One pass, never recursive: a value containing "$" stays as it is.
    return "".join(values.get(text, "") if is_macro else text
                   for is_macro, text in template.parts)


def message_values(request: DeliveryRequest, spec: PipeSpec) -> dict[str, str]:
    """The macros that do not depend on the recipient."""
    attrs = dict(request.attrs)
    sender = envelope_sender(request.sender, spec.null_sender)
    values = {name: attrs.get(attr, "") for name, attr in _ATTR_MACROS.items()}
    values.update({
        "sender": quote_822_local(sender) if sender and "q" in spec.flags else sender,
        "nexthop": request.nexthop.lower() if "h" in spec.flags else request.nexthop,
        "size": str(request.size),
        "queue_id": request.queue_id,
    })
    return values


def envelope_sender(sender: str, null_sender: str) -> str:
    """The sender in internal form; the null sender becomes null_sender (may be empty)."""
    return internal_form(sender) if sender else null_sender


# --- the message copy ---------------------------------------------------------------------

def prepended_lines(spec: PipeSpec, sender: str, recipient: RecipientRef,
                    now: float) -> list[str]:
    """From_, Return-Path:, X-Original-To: and Delivered-To:, in Postfix's order."""
    lines: list[str] = []
    quoted = quote_822_local(sender) if sender else ""
    if "F" in spec.flags:
        stamp = time.asctime(time.localtime(now))
        lines.append(f"From {quoted or MAILER_DAEMON}  {stamp}")
    if "R" in spec.flags:
        lines.append(f"Return-Path: <{quoted}>")
    if "O" in spec.flags and recipient.orig_rcpt:
        lines.append(f"X-Original-To: {quote_822_local(internal_form(recipient.orig_rcpt))}")
    if "D" in spec.flags:
        lines.append(f"Delivered-To: {quote_822_local(internal_form(recipient.address))}")
    return lines


def copy_line(line: bytes, flags: str, eol: bytes) -> bytes:
    """One stored line as the command gets it: >From quoting, dot-stuffing, eol."""
    if ">" in flags and line.startswith(b"From "):
        line = b">" + line
    if "." in flags and line.startswith(b"."):
        line = b"." + line
    return line + eol


async def delivered_to_loop(lines: AsyncIterator[bytes], recipient: str) -> bool:
    """Flag D's loop check: does the header block hold ``Delivered-To: recipient``?"""
    wanted = internal_form(recipient).lower()
    found: list[list[str]] = []
    in_header = False
    async for raw in lines:
        if not raw.strip():
            break
        text = raw.decode("utf-8", "replace")
        if text[:1] in (" ", "\t"):
            if in_header:
                found[-1].append(text.strip())
            continue
        name, colon, value = text.partition(":")
        in_header = bool(colon) and name.strip().lower() == "delivered-to"
        if in_header:
            found.append([value.strip()])
    return any(internal_form(" ".join(parts).strip()).lower() == wanted for parts in found)


# --- exit status --------------------------------------------------------------------------

def printable_output(output: bytes) -> str:
    """Command output as Postfix logs it: tabs and newlines become spaces, other
    non-printable bytes underscores."""
    text = "".join(" " if b in (9, 10) else chr(b) if 32 <= b < 127 else "_" for b in output)
    return text.strip()


def leading_dsn(text: str) -> tuple[str, str] | None:
    """``("5.1.1", "rest")`` when text starts with an RFC 3463 status code (dsn_valid)."""
    head, _, rest = text.partition(" ")
    pieces = head.split(".")
    if (len(pieces) == 3 and pieces[0] in tuple(_DSN_CLASSES)
            and all(p.isascii() and p.isdigit() and 1 <= len(p) <= 3 for p in pieces[1:])):
        return head, rest.strip()
    return None


def command_outcome(returncode: int | None, output: bytes, command: str, *,
                    timed_out: bool = False) -> Outcome:
    """A finished (or killed) command's result, as pipe_command() classifies it."""
    log = printable_output(output)
    suffix = f". Command output: {log}" if log else ""
    if timed_out:
        return Outcome(DEFERRED, "4.3.0", f'Command time limit exceeded: "{command}"{suffix}')
    if returncode is None or returncode < 0:
        number = -(returncode or 0)
        return Outcome(DEFERRED, "4.3.0", f'Command died with signal {number}: "{command}"{suffix}')
    if returncode == 0:
        return Outcome(SENT, "2.0.0", log)
    found = leading_dsn(log)
    if found is not None:
        dsn, text = found
        if dsn[0] == "4":
            return Outcome(DEFERRED, dsn, text)
        return Outcome(BOUNCED, dsn if dsn[0] == "5" else "5.0.0", text)
    if returncode in SYSEXITS:
        dsn, text = SYSEXITS[returncode]
        return Outcome(DEFERRED if dsn[0] == "4" else BOUNCED, dsn, text + suffix)
    return Outcome(BOUNCED, "5.3.0",
                   f'Command died with status {returncode}: "{command}"{suffix}')


def success_reason(service: str, output: str) -> str:
    return f"delivered via {service} service" + (f" ({output[:100]})" if output else "")


# --- environment and privileges -----------------------------------------------------------

def command_environment(export: Iterable[str], current: Mapping[str, str]) -> dict[str, str]:
    """export_environment: listed names keep their value, ``name=value`` sets one; PATH reset."""
    env: dict[str, str] = {}
    for item in export:
        item = item[1:-1].strip() if item.startswith("{") and item.endswith("}") else item
        name, equals, value = item.partition("=")
        if equals:
            env[name.strip()] = value.strip()
        elif name in current:
            env[name] = current[name]
    env["PATH"] = DEFAULT_PATH
    return env


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int


def command_credentials(spec: PipeSpec, mail_owner: str, *, file: str | None = None,
                        line: int | None = None) -> Credentials:
    """user=/group= as ids; never root, group 0 or the mail system owner (as Postfix)."""
    try:
        entry = pwd.getpwnam(spec.user)
    except KeyError:
        raise ConfigError(f"pipe: unknown user name in user=: {spec.user}",
                          file=file, line=line) from None
    gid = entry.pw_gid
    if spec.group:
        try:
            gid = grp.getgrnam(spec.group).gr_gid
        except KeyError:
            raise ConfigError(f"pipe: unknown group name in user=: {spec.group}",
                              file=file, line=line) from None
    if entry.pw_uid == 0:
        raise ConfigError(f"pipe: user={spec.user} has root privileges", file=file, line=line)
    if gid == 0:
        raise ConfigError("pipe: user= gives the privileged group id 0", file=file, line=line)
    try:
        owner = pwd.getpwnam(mail_owner)
    except KeyError:
        owner = None
    if owner is not None and (entry.pw_uid == owner.pw_uid or gid == owner.pw_gid):
        raise ConfigError(f"pipe: user= must not be the mail system owner {mail_owner}",
                          file=file, line=line)
    return Credentials(entry.pw_uid, gid)


# --- the agent ----------------------------------------------------------------------------

@dataclass
class _Run:
    returncode: int | None = None
    output: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    write_error: OSError | None = None


class PipeAgent:
    """The pipe(8) delivery agent for one master.cf service."""

    def __init__(self, config: Config, service: Service, content: ContentSource, *,
                 clock: Callable[[], float] = time.time) -> None:
        if service.pipe is None:
            raise ConfigError(f"service {service.name} is not a pipe service",
                              file=service.file, line=service.line)
        where = {"file": service.file, "line": service.line}
        config = config.with_overrides(service.override_map)
        self.service = service
        self.spec = service.pipe
        self.content = content
        self.clock = clock
        self.templates = tuple(parse_arg(word, **where) for word in self.spec.argv)
        self.time_limit = config.get_time(config.transport_param(service.name, "_time_limit"))
        self.environment = command_environment(config.get_list("export_environment"),
                                               os.environ)
        self.splitter = Splitter(config.get("recipient_delimiter"),
                                 config.get_bool("owner_request_special"),
                                 ("postmaster", MAILER_DAEMON.lower(),
                                  config.get("double_bounce_sender").lower()))
        # Only root can switch users; unprivileged, commands run as mailcore's own user.
        self.credentials = (command_credentials(self.spec, config.get("mail_owner"), **where)
                            if os.geteuid() == 0 else None)

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if not request.recipients:
            return DeliveryResult(request.queue_id, ())
        started = asyncio.get_running_loop().time()
        outcome = await self._outcome(request)
        elapsed = asyncio.get_running_loop().time() - started
        action = ""
        if outcome.status == SENT:
            action = "delivered" if "X" in self.spec.flags else "relayed"
        results = tuple(RecipientResult(r.seq, outcome.status, outcome.dsn, outcome.reason,
                                        relay=self.service.name, action=action)
                        for r in request.recipients)
        return DeliveryResult(request.queue_id, results, Delays(transmission=elapsed))

    async def _outcome(self, request: DeliveryRequest) -> Outcome:
        flags, name = self.spec.flags, self.service.name
        many = len(request.recipients) > 1
        if many and ("D" in flags or "O" in flags):
            # Headers naming one recipient cannot go to a command that gets several.
            return Outcome(DEFERRED, *_CONFIG_ERROR)
        if self.spec.size_limit is not None and request.size > self.spec.size_limit:
            return Outcome(BOUNCED, "5.2.3", "message too large")
        first = request.recipients[0]
        if "D" in flags and await self._loops(request.queue_id, first.address):
            return Outcome(BOUNCED, "5.4.6", f"mail forwarding loop for {first.address}")
        argv = expand_argv(self.templates, message_values(request, self.spec),
                           request.recipients, flags, self.splitter)
        if not argv or not argv[0]:
            return Outcome(DEFERRED, *_CONFIG_ERROR)
        run = await self._run(argv, request)
        outcome = command_outcome(run.returncode, bytes(run.output), argv[0],
                                  timed_out=run.timed_out)
        if outcome.status == SENT and run.write_error is not None:
            soft = run.write_error.errno in (errno.EAGAIN, errno.ENOSPC, errno.EDQUOT)
            return Outcome(DEFERRED if soft else BOUNCED, "4.3.0" if soft else "5.3.0",
                           f'Command failed: error writing message: '
                           f'{os.strerror(run.write_error.errno or 0)}: "{argv[0]}"')
        if outcome.status == SENT:
            return Outcome(SENT, "2.0.0", success_reason(name, outcome.reason))
        return Outcome(outcome.status, outcome.dsn, sanitize(outcome.reason))

    async def _loops(self, queue_id: str, recipient: str) -> bool:
        async with aclosing(content_lines(self.content, queue_id)) as lines:
            return await delivered_to_loop(lines, recipient)

    async def _run(self, argv: list[str], request: DeliveryRequest) -> _Run:
        run = _Run()
        # Output goes to a pipe of our own: asyncio's Process.wait() would otherwise also wait
        # for every holder of the command's stdout (an offspring outside its group) to exit.
        read_fd, write_fd = os.pipe()
        try:
            process = await self._spawn(argv, write_fd)
        except OSError as exc:
            os.close(read_fd)
            # Postfix's child reports exec and chdir failures with EX_TEMPFAIL.
            where = exc.filename if exc.filename is not None else argv[0]
            run.returncode = EX_TEMPFAIL
            run.output += f"{where}: {exc.strerror or exc}".encode("utf-8", "replace")
            return run
        finally:
            os.close(write_fd)
        output = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(output), os.fdopen(read_fd, "rb", buffering=0))
        try:
            async with asyncio.timeout(self.time_limit or None):
                async with asyncio.TaskGroup() as group:
                    group.create_task(_read_bounded(output, run.output))
                    run.write_error = await self._feed(process.stdin, request)
                run.returncode = await process.wait()
        except TimeoutError:
            run.timed_out = True
        finally:
            transport.close()
            if run.timed_out or process.returncode is None:
                _kill_group(process.pid, leader_alive=process.returncode is None)
            if process.stdin is not None and not process.stdin.transport.is_closing():
                process.stdin.transport.abort()
            await process.wait()
        if run.timed_out:
            run.returncode = process.returncode
        return run

    async def _spawn(self, argv: list[str], output_fd: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=output_fd, stderr=output_fd,
            env=self.environment, cwd=self.spec.directory, start_new_session=True,
            close_fds=True, **_privileges(self.credentials, asyncio.get_running_loop()),
        )

    async def _feed(self, stdin: asyncio.StreamWriter | None, request: DeliveryRequest
                    ) -> OSError | None:
        """Stream the message into the command; a command that stops reading is no error."""
        if stdin is None:
            return None
        eol = self.spec.eol.encode("latin-1", "replace")
        sender = envelope_sender(request.sender, self.spec.null_sender)
        head = prepended_lines(self.spec, sender, request.recipients[0], self.clock())
        batch = bytearray(b"".join(h.encode("utf-8", "surrogateescape") + eol for h in head))
        try:
            async with aclosing(content_lines(self.content, request.queue_id)) as lines:
                async for line in lines:
                    batch += copy_line(line, self.spec.flags, eol)
                    if len(batch) >= _WRITE_BATCH:
                        stdin.write(bytes(batch))
                        batch.clear()
                        await stdin.drain()
            if "B" in self.spec.flags:
                batch += eol
            stdin.write(bytes(batch))
            await stdin.drain()
            stdin.close()
            await stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            stdin.close()
        except OSError as exc:
            stdin.close()
            return exc
        return None


def _privileges(creds: Credentials | None, loop: asyncio.AbstractEventLoop) -> dict:
    """How the child takes on user=/group=: subprocess's own arguments on asyncio's loop;
    uvloop does not take them, so there the child drops privileges itself before exec."""
    if creds is None:
        return {}
    if type(loop).__module__.split(".")[0] == "asyncio":
        return {"user": creds.uid, "group": creds.gid, "extra_groups": [creds.gid]}

    def drop() -> None:  # runs in the child between fork and exec: system calls only
        os.setgroups([creds.gid])
        os.setgid(creds.gid)
        os.setuid(creds.uid)
    return {"preexec_fn": drop}


async def _read_bounded(stream: asyncio.StreamReader | None, kept: bytearray) -> None:
    """Read to EOF into ``kept`` (so a killed command's output survives), keeping the first
    OUTPUT_LIMIT bytes and draining the rest so the command never blocks on a full pipe."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[:OUTPUT_LIMIT - len(kept)]


def _kill_group(pid: int, *, leader_alive: bool) -> None:
    """Kill the command and everything it started (it leads its own process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
        return
    except OSError:
        pass  # the group is empty, or the command left it
    if leader_alive:  # never signal a pid that may have been reaped and reused
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
