"""A private, throw-away Postfix instance for benchmarks: stock Debian binaries, a temporary
configuration directory, queue and maillog, smtpd on one 127.0.0.1 port.

Owns: writing that instance's main.cf and master.cf, ``postfix -c DIR check/start/stop``,
and counting its queue. Must not: touch /etc/postfix or the default instance, listen on
anything but 127.0.0.1, or send mail anywhere but a loopback port. It runs in one of two
modes: without ``relay_port`` every accepted message is put on hold by
``smtpd_end_of_data_restrictions = check_client_access static:HOLD``, so qmgr never schedules
a delivery and the queue count is the accepted count; with ``relay_port`` every message goes
through the smtp client to ``relayhost = [127.0.0.1]:relay_port`` (an IP literal in brackets,
so the client looks up neither MX nor address records) and nothing is held.

Invariants: ``postfix -c DIR`` with a directory that is not listed in the default
instance's alternate_config_directories is allowed for root only, so this needs root (the
master daemon needs it anyway). Leaving the ``with`` block always stops the instance: ``postfix
stop``, then SIGKILL to the master and its children if they are still there after a bounded
wait.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from harness import LOOPBACK, BenchError, Listening, mailq_count, tail

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"

# Every daemon is unchained (chroot n): the instance lives under /tmp, not /var/spool/postfix.
_SERVICES = """\
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
proxymap   unix  -  -  n  -     -  proxymap
anvil      unix  -  -  n  -     1  anvil
showq      unix  n  -  n  -     -  showq
postlog    unix-dgram n - n -   1  postlogd
"""

# Delivery through relayhost (relay_port mode): the smtp client for both default and relay
# transports, scache for its connection cache, and error/retry which qmgr may need.
_DELIVERY_SERVICES = """\
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
scache     unix  -  -  n  -     1  scache
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
"""


def postfix_available() -> str | None:
    """None when a private instance can run here, else why not."""
    if not Path(POSTFIX).is_file():
        return f"{POSTFIX} is not installed (scripts/install-peers installs it)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (postfix -c DIR, the master daemon)"
    return None


def postfix_version() -> str:
    done = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout.strip() or "?"


_COMMON_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = bench.test
inet_interfaces = {loopback}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
local_recipient_maps =
alias_maps =
alias_database =
message_size_limit = {message_size_limit}
"""


def main_cf(root: Path, *, message_size_limit: int, relay_port: int | None = None) -> str:
    """Without relay_port mail is held; with it mail is delivered to 127.0.0.1:relay_port."""
    return _COMMON_MAIN_CF.format(root=root, loopback=LOOPBACK,
                                  message_size_limit=message_size_limit) + (
        "smtpd_end_of_data_restrictions = check_client_access static:HOLD\n"
        if relay_port is None else
        f"relayhost = [{LOOPBACK}]:{relay_port}\n"
        # Postfix's default, written out because the e2e benchmark sets it on both sides.
        "default_destination_concurrency_limit = 20\n")


def master_cf(port: int, sessions: int, *, delivers: bool = False) -> str:
    # Postfix's default of 100 smtpd processes would make extra sessions wait in the backlog.
    maxproc = str(sessions) if sessions > 100 else "-"
    return (f"{LOOPBACK}:{port} inet n - n - {maxproc} smtpd\n{_SERVICES}"
            + (_DELIVERY_SERVICES if delivers else ""))


class PostfixInstance(Listening):
    """``with PostfixInstance(root, port, ...) as pf: ...``; root must be an empty directory."""

    def __init__(self, root: Path, port: int, *, sessions: int, message_size_limit: int,
                 relay_port: int | None = None, start_timeout: float = 30.0):
        self.root = root
        self.relay_port = relay_port
        self.port = port
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.maillog = root / "maillog"
        self._sessions = sessions
        self._size_limit = message_size_limit
        self._start_timeout = start_timeout
        self._master_pid: int | None = None

    def _launch(self) -> None:
        self._write_config()
        self._postfix("check")
        self._postfix("start")
        self._master_pid = self._read_master_pid()

    def _write_config(self) -> None:
        # Postfix's daemons run as mail_owner and must reach the queue through these paths.
        self.root.chmod(0o755)
        for parent in self.root.parents:
            if not parent.stat().st_mode & 0o001:
                raise BenchError(f"{parent} is not searchable by others, so Postfix's "
                                 f"daemons could not reach {self.root}")
        self.config_dir.mkdir(mode=0o755)
        self.queue_dir.mkdir(mode=0o755)
        (self.root / "data").mkdir(mode=0o755)
        owner = pwd.getpwnam(self._mail_owner())
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        (self.config_dir / "main.cf").write_text(main_cf(
            self.root, message_size_limit=self._size_limit, relay_port=self.relay_port))
        (self.config_dir / "master.cf").write_text(master_cf(
            self.port, self._sessions, delivers=self.relay_port is not None))

    @staticmethod
    def _mail_owner() -> str:
        done = subprocess.run([POSTCONF, "-d", "-h", "mail_owner"], capture_output=True,
                              text=True, timeout=30, check=False)
        return done.stdout.strip() or "postfix"

    def _postfix(self, command: str) -> None:
        # postfix(1) writes to stderr only on a terminal; its complaints land in maillog_file.
        done = subprocess.run([POSTFIX, "-c", str(self.config_dir), command],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            said = (done.stderr + done.stdout).strip()
            raise BenchError(f"postfix -c {self.config_dir} {command} failed "
                             f"(status {done.returncode}) {said}\n{tail(self.maillog)}")

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def died(self) -> str | None:
        """None while the master runs; else the end of the maillog."""
        if self._master_pid is None or not _alive(self._master_pid):
            return f"the Postfix master is not running\n{tail(self.maillog)}"
        return None

    def queue_count(self) -> int:
        """Messages in any queue (incoming, active, deferred, hold), read with postqueue -p."""
        done = subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-p"],
                              capture_output=True, text=True, errors="replace", timeout=120,
                              check=False)
        if done.returncode != 0:
            raise BenchError(f"postqueue -p failed: {done.stderr.strip()}")
        return mailq_count(done.stdout)

    def stop(self) -> None:
        pid = self._master_pid or self._read_master_pid()
        if pid is None or not _alive(pid):
            return
        children = _children(pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"], capture_output=True,
                           timeout=60, check=False)
        if _wait_gone(pid, timeout=15.0):
            return
        for victim in (pid, *children, *_children(pid)):
            _kill(victim)
        _wait_gone(pid, timeout=5.0)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a daemonized master is reaped by init, maybe late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    for _poll in range(int(timeout / 0.05) + 1):
        if not _alive(pid):
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return not _alive(pid)
