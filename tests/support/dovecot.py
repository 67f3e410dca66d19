"""A private Dovecot (Debian's dovecot-imapd + dovecot-lmtpd) for integration tests.

Owns: a temporary base directory with a generated dovecot.conf (imap and lmtp on free
loopback ports, an lmtp unix socket, a passwd-file userdb/passdb with plain passwords,
Maildir under the temporary directory, no TLS, a log file), running ``dovecot -F -c CONF``
in its own process group, waiting until it listens, and stopping it (the whole group) again;
reading a user's INBOX back over IMAP.

Must not: touch the system's Dovecot configuration, state or ports, or leave a process
behind: ``stop()`` kills the process group even when the master already exited.

As root, Dovecot's login processes run as ``dovenull``, its internal ones as ``dovecot``
(both created by the Debian package) and mail is stored as ``nobody``; unprivileged, all of
them are the current user.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
HELPERS = ("/usr/lib/dovecot/lmtp", "/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login")


def dovecot_binary() -> str | None:
    """The dovecot master binary when it and the lmtp/imap helpers are installed."""
    found = shutil.which("dovecot") or (DOVECOT if os.path.exists(DOVECOT) else None)
    if found is None or not all(os.path.exists(h) for h in HELPERS):
        return None
    return found


def require_dovecot() -> str:
    """The binary, else fail under CI (scripts/install-peers installs it) or skip."""
    found = dovecot_binary()
    if found is None:
        message = "dovecot-imapd/dovecot-lmtpd not installed (scripts/install-peers)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MailUser:
    name: str  # the full address: LMTP recipients and IMAP logins use it as is
    password: str
    fields: str = ""  # userdb extra fields, e.g. "userdb_quota_rule=*:storage=1"


def _accounts() -> tuple[str, str, pwd.struct_passwd]:
    """(login user, internal user, mail owner) for the current privileges."""
    if os.geteuid() == 0:
        return "dovenull", "dovecot", pwd.getpwnam("nobody")
    me = pwd.getpwuid(os.geteuid())
    return me.pw_name, me.pw_name, me


class Dovecot:
    """``with Dovecot([...]) as dc:`` starts it; leaving the block stops it."""

    def __init__(self, users: list[MailUser], *, binary: str | None = None):
        self.users = users
        self.binary = binary or DOVECOT
        self.root = Path(tempfile.mkdtemp(prefix="mc-dovecot-"))
        self.imap_port = free_port()
        self.lmtp_port = free_port()
        self.lmtp_socket = self.root / "lmtp.sock"
        self.log_path = self.root / "dovecot.log"
        self.mail_root = self.root / "mail"
        self.process: subprocess.Popen[bytes] | None = None

    # --- configuration ---------------------------------------------------------
    def config_text(self) -> str:
        login_user, internal_user, owner = _accounts()
        r = self.root
        return f"""
instance_name = mc-dovecot-{self.lmtp_port}
base_dir = {r}/run
state_dir = {r}/state
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {self.log_path}
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {min(owner.pw_uid, 500) or 1}
first_valid_gid = {min(owner.pw_gid, 1) or 1}
mail_location = maildir:{self.mail_root}/%u/Maildir
mail_plugins = quota
lmtp_add_received_header = no
lmtp_hdr_delivery_address = none
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users
  default_fields = uid={owner.pw_uid} gid={owner.pw_gid} home={self.mail_root}/%u
}}
plugin {{
  quota = maildir:User quota
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener {self.lmtp_socket} {{
    mode = 0666
  }}
}}
"""

    def _write_files(self) -> None:
        _, _, owner = _accounts()
        os.chmod(self.root, 0o755)  # login processes chroot below base_dir as root
        self.mail_root.mkdir()
        os.chown(self.mail_root, owner.pw_uid, owner.pw_gid)
        lines = [f"{u.name}:{{PLAIN}}{u.password}::::::{u.fields}\n" for u in self.users]
        (self.root / "users").write_text("".join(lines))
        (self.root / "dovecot.conf").write_text(self.config_text())

    # --- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        self._write_files()
        with open(self.root / "stdout.log", "wb") as out:
            self.process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited ({self.process.returncode}):\n"
                                   + self.log_tail())
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot did not start listening:\n" + self.log_tail())
            time.sleep(0.05)

    def _ready(self) -> bool:
        if not self.lmtp_socket.exists():
            return False
        for port in (self.imap_port, self.lmtp_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _stop_group(process)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.root / "stdout.log", self.log_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Dovecot:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reading mail back -----------------------------------------------------
    def fetch_inbox(self, user: MailUser) -> list[bytes]:
        """Every message in the user's INBOX as IMAP BODY[] (CRLF), oldest first."""
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            imap.login(user.name, user.password)
            imap.select("INBOX", readonly=True)
            _, data = imap.uid("SEARCH", "ALL")
            bodies = []
            for uid in data[0].split():
                _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                bodies.append(next(p[1] for p in parts if isinstance(p, tuple)))
        except BaseException:
            with contextlib.suppress(OSError):
                imap.shutdown()
            raise
        imap.logout()
        return bodies


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to Dovecot's process group, SIGKILL what is left after a grace period."""
    pgid = process.pid  # start_new_session made the master the group leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # children the master did not take down with it
    if process.returncode is None:
        process.wait(timeout=5)
