"""local(8) command delivery (Postfix command.c, pipe_command.c) and $name expansion of
forward_path, mailbox_command, luser_relay and command_execution_directory (local_expand).

Owns: building a command's argv (directly when it has no shell metacharacters, else through
/bin/sh -c or local_command_shell, as Postfix), its filtered environment, feeding it the
message, its time limit, and classifying the exit status by sysexits.

Must not: decide whether a command is allowed (the expansion code checks
allow_mail_to_commands first) or whose rights it runs with (the caller passes credentials).

Invariants: a command only ever comes from alias_maps, :include: files, .forward files or
mailbox_command(_maps) — never from a recipient address; every value taken from an address
($user, $extension, $RECIPIENT, ...) passes through command_expansion_filter, which turns
shell metacharacters into "_"; output kept for the bounce is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass

from mailcore.config.expand import ExpansionError, expand
from mailcore.delivery.mailbox import CopyHeaders, MessageFile
from mailcore.status import SYSEXITS, sanitize

SHELL_META = "\"'`$&|;()<>*?[]{}~#!\\=\n\r\t"
DEFAULT_PATH = "/usr/bin:/bin"
MAX_OUTPUT = 2048


@dataclass(frozen=True)
class CommandOutcome:
    dsn: str  # 2.0.0 on success
    text: str


def filtered(value: str, allowed: str) -> str:
    """command_expansion_filter / forward_expansion_filter: others become "_"."""
    return "".join(c if c in allowed else "_" for c in value)


def local_expand(text: str, names: Mapping[str, str], allowed: str) -> tuple[str, bool]:
    """Expand $user, $home, ... in ``text``; (result, True when a name was undefined/empty)."""
    undefined: list[str] = []

    def lookup(name: str) -> str | None:
        value = names.get(name, "")
        if not value:
            undefined.append(name)
            return None
        return filtered(value, allowed)

    try:
        return expand(text, lookup), bool(undefined)
    except ExpansionError:
        return "", True


def command_argv(command: str, shell: str) -> list[str]:
    """Postfix exec_command: split on white space unless the command needs a shell."""
    if shell:
        return [*shlex.split(shell), command]
    if any(c in SHELL_META for c in command.strip()) or not command.split():
        return ["/bin/sh", "-c", command]
    return command.split()


def command_env(names: Mapping[str, str], export: tuple[str, ...], allowed: str,
                environ: Mapping[str, str]) -> dict[str, str]:
    env = {name: environ[name] for name in export if name in environ}
    env["PATH"] = DEFAULT_PATH
    for key, name in (("HOME", "home"), ("LOGNAME", "user"), ("USER", "user"),
                      ("SHELL", "shell"), ("SENDER", "sender"), ("RECIPIENT", "recipient"),
                      ("LOCAL", "local"), ("EXTENSION", "extension"), ("DOMAIN", "domain"),
                      ("ORIGINAL_RECIPIENT", "original_recipient"), ("ENVID", "envid")):
        value = names.get(name, "")
        if value or key in ("SENDER",):
            env[key] = filtered(value, allowed)
    return env


async def run_command(command: str, message: MessageFile, headers: CopyHeaders, *,
                      argv: list[str], env: dict[str, str], cwd: str,
                      credentials: Mapping[str, object], time_limit: float,
                      now: float) -> CommandOutcome:
    """Run one delivery command with the message on its stdin."""
    read_end, write_end = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=read_end, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
            close_fds=True, **credentials)  # type: ignore[arg-type]
    except OSError as exc:
        os.close(write_end)
        return CommandOutcome("4.3.0", f"cannot execute command \"{command}\": {exc.strerror}")
    finally:
        os.close(read_end)
    loop = asyncio.get_running_loop()
    feeder = loop.run_in_executor(None, _feed, write_end, message, headers, now)
    output = bytearray()
    timed_out = False
    try:
        async with asyncio.timeout(time_limit):
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                output += chunk[: max(0, MAX_OUTPUT - len(output))]
            await proc.wait()
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        await feeder
    return classify_exit(command, proc.returncode, bytes(output), timed_out)


def _feed(fd: int, message: MessageFile, headers: CopyHeaders, now: float) -> None:
    """Write the message into the command's stdin; a command that stops reading is fine."""
    try:
        with open(fd, "wb", buffering=65536) as pipe:
            message.copy(pipe.write, headers, now)
    except (BrokenPipeError, ConnectionResetError):
        pass


def classify_exit(command: str, status: int | None, output: bytes,
                  timed_out: bool) -> CommandOutcome:
    text = sanitize(output.decode("utf-8", "replace"))
    tail = f". Command output: {text}" if text else ""
    if timed_out:
        return CommandOutcome("5.3.0", f"Command time limit exceeded: \"{command}\"{tail}")
    if status is None or status < 0:
        signum = -status if status else 0
        return CommandOutcome("4.3.0", f"Command died with signal {signum}: "
                                       f"\"{command}\"{tail}")
    if status == 0:
        return CommandOutcome("2.0.0", f"delivered to command: {command}")
    if status in SYSEXITS:
        dsn, detail = SYSEXITS[status]
        return CommandOutcome(dsn, f"{detail}{tail}")
    return CommandOutcome("5.3.0", f"Command died with status {status}: \"{command}\"{tail}")
