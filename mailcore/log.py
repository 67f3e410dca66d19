"""The maillog: Postfix-format log lines that admins and pflogsumm already read.

Owns: the line format ``Mon DD HH:MM:SS host syslog_name/service[pid]: text``, where lines go
(maillog_file, or standard error when it is empty), and the small helpers that build
Postfix's recurring messages (delays, client display).

Must not: decide anything about mail; every module passes finished text.

Invariants: one write per line, so lines from concurrent sessions never interleave; a log write
never raises into mail handling (a failing log file is reported once on standard error).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


class MailLog:
    """A maillog writer shared by every coroutine of one server (not global: passed in)."""

    def __init__(
        self,
        *,
        hostname: str,
        syslog_name: str = "mailcore",
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
        stream: TextIO | None = None,
    ):
        self.hostname = hostname.split(".")[0] if hostname else "localhost"
        self.syslog_name = syslog_name
        self._clock = clock
        self._pid = os.getpid()
        self._owned = path is not None
        self._stream: TextIO = (
            path.open("a", encoding="utf-8", errors="backslashreplace", buffering=1)
            if path is not None
            else stream or sys.stderr
        )
        self._broken = False
        # The stamp has whole seconds, so it is formatted once per second, not per line.
        self._stamp_second: int | None = None
        self._stamp = ""

    def _stamp_for(self, now: float) -> str:
        second = math.floor(now)
        if second != self._stamp_second:
            self._stamp = time.strftime("%b %e %H:%M:%S", time.localtime(second))
            self._stamp_second = second
        return self._stamp

    def line(self, service: str, text: str, *, syslog_name: str | None = None) -> None:
        stamp = self._stamp_for(self._clock())
        name = syslog_name or self.syslog_name
        record = f"{stamp} {self.hostname} {name}/{service}[{self._pid}]: {_one_line(text)}\n"
        try:
            self._stream.write(record)
            self._stream.flush()
        except (OSError, ValueError) as exc:
            if not self._broken:
                self._broken = True
                print(f"mailcore: cannot write the maillog: {exc}", file=sys.stderr)

    def info(self, service: str, text: str) -> None:
        self.line(service, text)

    def warning(self, service: str, text: str) -> None:
        self.line(service, f"warning: {text}")

    def error(self, service: str, text: str) -> None:
        self.line(service, f"error: {text}")

    def close(self) -> None:
        if self._owned:
            self._stream.close()


def _one_line(text: str) -> str:
    # Remote text (replies, headers) must never forge extra log lines.
    if text.isprintable():  # the usual case: nothing to replace (" " is printable)
        return text
    return "".join(ch if ch.isprintable() or ch == " " else "?" for ch in text)


def open_maillog(config_get: Callable[[str], str], config_dir: Path) -> MailLog:
    """A MailLog from main.cf's maillog_file, syslog_name and myhostname."""
    raw = config_get("maillog_file")
    path = None
    if raw:
        path = Path(raw) if Path(raw).is_absolute() else (config_dir / raw).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
    return MailLog(
        hostname=config_get("myhostname"), syslog_name=config_get("syslog_name"), path=path
    )


def format_delay(seconds: float) -> str:
    """Postfix prints delays with up to two significant decimals: 0.01, 1.2, 35."""
    if seconds < 0:
        seconds = 0.0
    if seconds >= 10:
        return f"{seconds:.0f}"
    if seconds >= 0.1:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") or "0"
    return f"{seconds:.2f}".rstrip("0").rstrip(".") or "0"
