"""A throw-away mailcore server for benchmarks: ``mailcore -c DIR serve`` as a subprocess with
a temporary configuration, queue and maillog, SMTP on one 127.0.0.1 port.

Owns: that server's main.cf and master.cf, starting it, its peak RSS, counting its queue, and
stopping it. Must not: listen on anything but 127.0.0.1, send mail anywhere but a loopback
port, or look anything up outside the machine — peer-name lookups are off and
``dns_nameservers`` points at a closed loopback port. Without ``relay_port`` master.cf lists
no delivery service, so accepted mail stays queued; with it, smtp and relay services deliver
everything to ``relayhost = [127.0.0.1]:relay_port``.

Invariants: leaving the ``with`` block always stops the process: SIGTERM (mailcore's clean
shutdown), SIGKILL when it has not exited after a bounded wait.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from harness import LOOPBACK, BenchError, Listening, mailq_count, tail


def main_cf(root: Path, *, group_commit: bool, message_size_limit: int,
            relay_port: int | None = None) -> str:
    relay = (
        # As for Postfix: held mail is stored in full but never scheduled for delivery.
        "smtpd_end_of_data_restrictions = check_client_access static:HOLD\n"
        if relay_port is None else
        f"relayhost = [{LOOPBACK}]:{relay_port}\n"
        # Postfix's default, written out because the e2e benchmark sets it on both sides.
        "default_destination_concurrency_limit = 20\n")
    return f"""\
compatibility_level = 3.6
queue_directory = {root / "queue"}
data_directory = {root / "data"}
maillog_file = {root / "maillog"}
myhostname = bench.test
inet_interfaces = {LOOPBACK}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
dns_nameservers = {LOOPBACK}:1
local_recipient_maps =
alias_maps =
alias_database =
message_size_limit = {message_size_limit}
queue_group_commit = {"yes" if group_commit else "no"}
{relay}"""


def master_cf(port: int, *, delivers: bool = False) -> str:
    smtpd = f"{LOOPBACK}:{port} inet n - n - - smtpd\n"
    if not delivers:
        return smtpd
    return (smtpd + "smtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\n")


class MailcoreInstance(Listening):
    """``with MailcoreInstance(command, root, port, group_commit=...) as mc: ...``; root must
    be an empty directory; command is the ``mailcore`` executable."""

    def __init__(self, command: Path, root: Path, port: int, *, group_commit: bool,
                 message_size_limit: int, relay_port: int | None = None, uvloop: bool = True,
                 start_timeout: float = 30.0, stop_timeout: float = 30.0):
        self.command = command
        self.relay_port = relay_port
        self.root = root
        self.port = port
        self.config_dir = root / "etc"
        self.maillog = root / "maillog"
        self.output = root / "serve.out"
        self.group_commit = group_commit
        self._size_limit = message_size_limit
        self._uvloop = uvloop
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self) -> None:
        if not self.command.is_file():
            raise BenchError(f"{self.command} does not exist (run scripts/setup or scripts/test)")
        self._write_config()
        self._start()

    def _write_config(self) -> None:
        self.config_dir.mkdir()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        (self.config_dir / "main.cf").write_text(main_cf(
            self.root, group_commit=self.group_commit, message_size_limit=self._size_limit,
            relay_port=self.relay_port))
        (self.config_dir / "master.cf").write_text(master_cf(
            self.port, delivers=self.relay_port is not None))

    def _start(self) -> None:
        argv = [str(self.command), "-c", str(self.config_dir), "serve"]
        if not self._uvloop:
            argv.append("--no-uvloop")
        with self.output.open("wb") as out:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, cwd=self.root)

    def died(self) -> str | None:
        """None while the server runs; else its exit status and last words."""
        if self._process is None or self._process.poll() is None:
            return None
        return (f"mailcore serve exited with status {self._process.returncode}:\n"
                f"{tail(self.output)}\nmaillog:\n{tail(self.maillog)}")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def queue_db(self) -> Path:
        """The queue's SQLite database (queue_directory/queue.db)."""
        return self.root / "queue" / "queue.db"

    def peak_rss_kib(self) -> int | None:
        """VmHWM of the server process: the most resident memory it has used so far."""
        return self.status_kib("VmHWM")

    def status_kib(self, field: str) -> int | None:
        """A kB figure from the server's /proc/PID/status (VmRSS, VmHWM, RssAnon, ...);
        None once the process is gone or when the kernel does not report that field."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        prefix = f"{field}:"
        for line in status.splitlines():
            if line.startswith(prefix):
                return int(line.split()[1])
        return None

    def queue_count(self) -> int:
        """Messages in any queue state, read with ``mailcore queue list`` (mailq format)."""
        done = subprocess.run([str(self.command), "-c", str(self.config_dir), "queue", "list"],
                              capture_output=True, text=True, errors="replace", timeout=120,
                              check=False)
        if done.returncode != 0:
            raise BenchError(f"mailcore queue list failed (status {done.returncode}): "
                             f"{done.stderr.strip()[-500:]}")
        return mailq_count(done.stdout)

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
