"""Start a mailcore smtpd in-process on a loopback port with a temporary queue directory."""

from __future__ import annotations

import io
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mailcore.app import MailSystem
from mailcore.config import Config, from_mapping
from mailcore.log import MailLog
from mailcore.queue import Queue, QueuedMessage
from mailcore.server import SmtpServer

BASE_SETTINGS: Mapping[str, str] = {
    "myhostname": "mx.test",
    "mydomain": "test",
    "mydestination": "mx.test, example.test",
    "mynetworks": "127.0.0.1/32",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    # Postfix's default (unix:passwd.byname + hash:/etc/aliases) would refuse the tests'
    # made-up local users at RCPT; tests of recipient validation set it themselves.
    "local_recipient_maps": "",
    "smtpd_peername_lookup": "no",
    "smtpd_forbid_bare_newline": "yes",
    "smtpd_error_sleep_time": "0",
    "smtpd_timeout": "10s",
    "dns_nameservers": "127.0.0.1:9",  # never the system resolver, even by mistake
    "dns_timeout": "2s",
}


@dataclass
class RunningServer:
    server: SmtpServer
    queue: Queue
    config: Config
    log_stream: io.StringIO
    host: str
    port: int

    @property
    def log(self) -> str:
        return self.log_stream.getvalue()

    async def messages(self) -> list[QueuedMessage]:
        return [m async for m in self.queue.iter_messages()]

    async def content(self, queue_id: str) -> bytes:
        return b"".join([chunk async for chunk in self.queue.read_content(queue_id)])


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (master.cf refuses port 0, so tests pick one this way)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def make_config(tmp_path: Path, settings: Mapping[str, str] | None = None,
                listen: str = "", options: str = "", services: str = "") -> Config:
    listen = listen or f"127.0.0.1:{free_port()}"
    merged = {**BASE_SETTINGS, "queue_directory": str(tmp_path / "queue"),
              "shutdown_grace_time": "2s", **(settings or {})}
    master = f"{listen} inet n - n - - smtpd {options}\n{services}"
    return from_mapping(merged, config_dir=tmp_path, master_cf=master)


@asynccontextmanager
async def running_server(tmp_path: Path, settings: Mapping[str, str] | None = None,
                         *, listen: str = "", options: str = "", services: str = ""
                         ) -> AsyncIterator[RunningServer]:
    """``services``: extra master.cf lines (delivery transports) for tests that deliver."""
    config = make_config(tmp_path, settings, listen, options, services)
    stream = io.StringIO()
    log = MailLog(hostname="mx.test", stream=stream)
    async with MailSystem(config, log=log) as system:
        assert system.smtpd is not None and system.queue is not None
        host, port = system.smtpd.bound_addresses()[0]
        yield RunningServer(system.smtpd, system.queue, config, stream, host, port)
