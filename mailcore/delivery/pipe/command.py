"""pipe(8) command execution: environment, user= rights, the child process and its output.

Owns: export_environment filtering (PATH reset), user=/group= resolved to ids with Postfix's
refusals (root, group 0, the mail system owner), and running argv directly — its own
session and process group, stdout and stderr to a private pipe, stdin fed by the caller,
TRANSPORT_time_limit — with a bounded capture of what it printed.
Must not: use a shell, block the event loop, classify the exit status (outcome.py), or build
the message copy (copy.py and the agent feed stdin).
Invariants: a command still running when run_command ends (time limit, cancellation, error)
is killed with its whole process group, and the leader is always reaped; at most
OUTPUT_LIMIT bytes of output are kept, the rest drained so the command never blocks on it.
Parameters: export_environment, mail_owner (through the agent); the time limit is passed in.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field

from mailcore.config.master import PipeSpec
from mailcore.errors import ConfigError

OUTPUT_LIMIT = 2048  # bytes of command output kept for the log and the bounce
DEFAULT_PATH = "/usr/bin:/bin"  # Postfix resets PATH to the C library's _PATH_DEFPATH

EX_TEMPFAIL = 75


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


# Streams the message into the command's stdin; returns the write error, if any.
Feed = Callable[[asyncio.StreamWriter | None], Awaitable[OSError | None]]


@dataclass
class CommandRun:
    """What running the command produced, for outcome.command_outcome."""

    returncode: int | None = None
    output: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    write_error: OSError | None = None


async def run_command(argv: list[str], feed: Feed, *, environment: Mapping[str, str],
                      directory: str | None, credentials: Credentials | None,
                      time_limit: float) -> CommandRun:
    """Run argv (no shell) with ``feed`` writing its stdin, within time_limit (0: none)."""
    run = CommandRun()
    # Output goes to a pipe of our own: asyncio's Process.wait() would otherwise also wait
    # for every holder of the command's stdout (an offspring outside its group) to exit.
    read_fd, write_fd = os.pipe()
    try:
        process = await _spawn(argv, write_fd, environment, directory, credentials)
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
        async with asyncio.timeout(time_limit or None):
            async with asyncio.TaskGroup() as group:
                group.create_task(_read_bounded(output, run.output))
                run.write_error = await feed(process.stdin)
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


async def _spawn(argv: list[str], output_fd: int, environment: Mapping[str, str],
                 directory: str | None, credentials: Credentials | None
                 ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=output_fd, stderr=output_fd,
        env=environment, cwd=directory, start_new_session=True,
        close_fds=True, **_privileges(credentials, asyncio.get_running_loop()),
    )


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
