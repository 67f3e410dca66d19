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

Parts: address.py (address forms), argv.py (macro expansion), copy.py (the stdin copy),
command.py (environment, user= rights, running the command), outcome.py (exit status).
This module holds the PipeAgent and re-exports every public name of the parts.

Parameters: TRANSPORT_time_limit (command_time_limit), export_environment,
recipient_delimiter, owner_request_special, double_bounce_sender, mail_owner.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from contextlib import aclosing

from mailcore.config import Config
from mailcore.config.master import Service
from mailcore.delivery import ContentSource, content_lines
from mailcore.delivery.pipe.address import (
    MAILER_DAEMON,
    fold_address,
    internal_form,
    quote_822_local,
)
from mailcore.delivery.pipe.argv import (
    MACROS,
    MESSAGE_MACROS,
    RECIPIENT_MACROS,
    ArgTemplate,
    Splitter,
    envelope_sender,
    expand_argv,
    message_values,
    parse_arg,
    recipient_values,
)
from mailcore.delivery.pipe.command import (
    DEFAULT_PATH,
    EX_TEMPFAIL,
    OUTPUT_LIMIT,
    CommandRun,
    Credentials,
    command_credentials,
    command_environment,
    run_command,
)
from mailcore.delivery.pipe.copy import copy_line, delivered_to_loop, prepended_lines
from mailcore.delivery.pipe.outcome import (
    Outcome,
    command_outcome,
    leading_dsn,
    printable_output,
    success_reason,
)
from mailcore.errors import ConfigError
from mailcore.model import (
    BOUNCED,
    DEFERRED,
    SENT,
    Delays,
    DeliveryRequest,
    DeliveryResult,
    RecipientResult,
)
from mailcore.status import SYSEXITS, sanitize

__all__ = [
    "DEFAULT_PATH", "EX_TEMPFAIL", "MACROS", "MAILER_DAEMON", "MESSAGE_MACROS", "OUTPUT_LIMIT",
    "RECIPIENT_MACROS", "SYSEXITS", "ArgTemplate", "CommandRun", "Credentials", "Outcome",
    "PipeAgent", "Splitter", "command_credentials", "command_environment", "command_outcome",
    "copy_line", "delivered_to_loop", "envelope_sender", "expand_argv", "fold_address",
    "internal_form", "leading_dsn", "message_values", "parse_arg", "prepended_lines",
    "printable_output", "quote_822_local", "recipient_values", "run_command",
    "success_reason",
]

_WRITE_BATCH = 65536
_CONFIG_ERROR = ("4.3.5", "mail system configuration error")


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
        run = await run_command(argv, lambda stdin: self._feed(stdin, request),
                                environment=self.environment, directory=self.spec.directory,
                                credentials=self.credentials, time_limit=self.time_limit)
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
                        if stdin.is_closing():
                            raise BrokenPipeError  # the command closed its input
                        stdin.write(bytes(batch))
                        batch.clear()
                        await stdin.drain()
            if "B" in self.spec.flags:
                batch += eol
            # uvloop raises RuntimeError, not BrokenPipeError, for a write to a pipe the
            # command already closed: look before writing.
            if stdin.is_closing():
                raise BrokenPipeError
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
