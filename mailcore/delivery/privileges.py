"""Whose rights a mailbox write or a delivery command uses, and how that is enforced.

Owns: ``Identity`` (uid, gid), the ``Privileges`` runner that performs blocking file work as an
identity without blocking the event loop, command credentials for subprocesses, and
``privilege_report`` for ``mailcore check``.

Mechanism (why it is safe in one asyncio process): a process-wide setuid per delivery is
impossible while other coroutines run, so file work for a recipient runs in a dedicated
worker thread that switches only *that thread's* filesystem credentials with the Linux
``setfsuid``/``setfsgid`` system calls (per-thread in the kernel; glibc does not broadcast
them) and the raw ``setgroups`` system call (the libc wrapper would broadcast to every
thread). While the file uid is not 0 the kernel drops CAP_DAC_OVERRIDE, CAP_FOWNER and the
other filesystem capabilities from that thread, so every open, create, link and mkdir is
checked against the recipient's rights exactly as if the process were the recipient. The
worker restores uid/gid 0 after each job and verifies it; a thread that cannot be restored
raises and is never reused (its executor is shut down). Commands get real credentials: the
child process drops to the recipient's uid, gid and groups after fork and before exec.

Must not: change the credentials of any thread except its own workers; run anything as root
on behalf of a recipient (root rights become default_privs, as Postfix does).
Invariants: when the process is not root, nothing changes credentials and every delivery runs
as the server user (``privilege_report`` says so).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# raw system call numbers of setgroups(2); the glibc wrapper would change every thread
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159, "ppc64le": 81, "s390x": 206}


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int


class PrivilegeError(OSError):
    """File credentials could not be switched or restored."""


def running_as_root() -> bool:
    return os.geteuid() == 0


def server_identity() -> Identity:
    return Identity(os.geteuid(), os.getegid())


def privilege_report() -> str:
    """One line for ``mailcore check``: whose rights local and virtual deliveries use."""
    if not running_as_root():
        me = server_identity()
        return (f"delivery privileges: not running as root; mailbox, file and command "
                f"deliveries run as the server user (uid {me.uid}, gid {me.gid})")
    if _fs_calls() is None:
        return ("delivery privileges: running as root, but per-thread file credentials are "
                f"unavailable on {platform.system()}/{platform.machine()}; deliveries refused")
    return ("delivery privileges: running as root; files and commands use the recipient's "
            "uid/gid (default_privs for root-owned aliases)")


def _fs_calls() -> tuple[Callable[[int], int], Callable[[int], int],
                         Callable[[int, list[int]], int]] | None:
    if platform.system() != "Linux" or platform.machine() not in _SYS_SETGROUPS:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_SETGROUPS[platform.machine()]

    def setgroups(gid: int, groups: list[int]) -> int:
        array = (ctypes.c_uint * len(groups))(*groups)
        return int(libc.syscall(ctypes.c_long(number), ctypes.c_long(len(groups)), array))

    return libc.setfsuid, libc.setfsgid, setgroups


class Privileges:
    """Runs blocking file work as an identity in worker threads; one per agent."""

    def __init__(self, *, workers: int = 8) -> None:
        self.root = running_as_root()
        self._calls = _fs_calls() if self.root else None
        # read here, in the loop's thread: a worker's own group list is the one it switched to
        self._groups = list(os.getgroups()) or [os.getegid()]
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="mailcore-delivery")

    def effective(self, wanted: Identity) -> Identity:
        """The identity a delivery really gets: the server user when not root."""
        return wanted if self.root else server_identity()

    async def run(self, identity: Identity | None, job: Callable[[], T]) -> T:
        """``job()`` in a worker thread with file rights of ``identity`` (None: as is)."""
        loop = asyncio.get_running_loop()
        if identity is None or not self.root:
            return await loop.run_in_executor(self._executor, job)
        if self._calls is None:
            raise PrivilegeError("per-thread file credentials are unavailable on this system")
        return await loop.run_in_executor(self._executor, self._as, identity, job)

    def _as(self, identity: Identity, job: Callable[[], T]) -> T:
        assert self._calls is not None
        setfsuid, setfsgid, setgroups = self._calls
        if setgroups(identity.gid, [identity.gid]) != 0:
            raise PrivilegeError(ctypes.get_errno(), "setgroups failed")
        setfsgid(identity.gid)
        setfsuid(identity.uid)
        try:
            if setfsuid(-1) != identity.uid or setfsgid(-1) != identity.gid:
                raise PrivilegeError("cannot switch file uid/gid")
            return job()
        finally:
            setfsuid(0)
            setfsgid(0)
            restored = setgroups(0, self._groups) == 0
            if setfsuid(-1) != 0 or setfsgid(-1) != 0 or not restored:
                # never hand this thread to another job: the pool is unusable from now on
                self._executor.shutdown(wait=False)
                raise PrivilegeError("cannot restore file uid/gid 0 in a delivery thread")

    def command_credentials(self, identity: Identity) -> dict[str, object]:
        """Keyword arguments for asyncio.create_subprocess_exec: drop to ``identity``."""
        if not self.root:
            return {}
        return {"user": identity.uid, "group": identity.gid, "extra_groups": [identity.gid]}

    def close(self) -> None:
        self._executor.shutdown(wait=True)
