"""smtpd's view of one listener's Config, read once, plus the reply value type.

Owns: the typed, frozen snapshot of the main.cf parameters smtpd consults (after the
listener's master.cf ``-o`` overrides), and ``Reply``, the value every dialogue step returns.
Must not: read configuration anywhere else in smtpd; hold runtime state.

Parameters: myhostname, mail_name, smtpd_banner, message_size_limit, line_length_limit,
smtputf8_enable, smtpd_discard_ehlo_keywords, smtpd_helo_required, disable_vrfy_command,
smtpd_recipient_limit, smtpd_timeout, smtpd_session_time_limit (mailcore's own),
smtpd_soft_error_limit, smtpd_hard_error_limit, smtpd_error_sleep_time,
smtpd_junk_command_limit, smtpd_forbid_bare_newline, strict_rfc821_envelopes, queue_minfree,
queue_directory, smtpd_peername_lookup, smtpd_client_connection_count_limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailcore.config import Config

COMMAND_LINE_MIN = 512  # RFC 5321 4.5.3.1.4: a server must accept command lines this long


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: a code and one or more text lines (each with its enhanced status).

    ``close`` means the session ends after this reply is sent."""

    code: int
    lines: tuple[str, ...]
    close: bool = False

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    @property
    def text(self) -> str:
        """The reply as one log-friendly line: ``554 5.7.1 <x>: Relay access denied``."""
        return f"{self.code} {' '.join(self.lines)}"

    def render(self) -> bytes:
        last = len(self.lines) - 1
        out = [f"{self.code}{' ' if i == last else '-'}{line}\r\n"
               for i, line in enumerate(self.lines)]
        return "".join(out).encode("utf-8", "surrogateescape")


def reply(code: int, dsn: str, text: str, *, close: bool = False) -> Reply:
    return Reply(code, (f"{dsn} {text}",), close)


@dataclass(frozen=True)
class SmtpdSettings:
    myhostname: str
    mail_name: str = "mailcore"
    banner: str = "localhost ESMTP mailcore"
    message_size_limit: int = 10240000
    line_length_limit: int = 2048
    smtputf8: bool = True
    discard_ehlo_keywords: frozenset[str] = frozenset()
    helo_required: bool = False
    disable_vrfy: bool = False
    recipient_limit: int = 1000
    timeout: float = 300.0
    session_time_limit: float = 3600.0
    soft_error_limit: int = 10
    hard_error_limit: int = 20
    error_sleep_time: float = 1.0
    junk_command_limit: int = 100
    forbid_bare_newline: bool = True
    strict_rfc821: bool = False
    queue_minfree: int = 0
    queue_directory: Path = Path(".")
    peername_lookup: bool = True
    connection_count_limit: int = 50

    @property
    def command_limit(self) -> int:
        """Longest command line read as one; Postfix reads up to line_length_limit."""
        return max(COMMAND_LINE_MIN, self.line_length_limit)


def smtpd_settings(config: Config) -> SmtpdSettings:
    return SmtpdSettings(
        myhostname=config.get("myhostname"),
        mail_name=config.get("mail_name"),
        banner=config.get("smtpd_banner"),
        message_size_limit=config.get_size("message_size_limit"),
        line_length_limit=max(config.get_size("line_length_limit"), 1),
        smtputf8=config.get_bool("smtputf8_enable"),
        discard_ehlo_keywords=frozenset(
            k.upper() for k in config.get_list("smtpd_discard_ehlo_keywords")),
        helo_required=config.get_bool("smtpd_helo_required"),
        disable_vrfy=config.get_bool("disable_vrfy_command"),
        recipient_limit=config.get_int("smtpd_recipient_limit"),
        timeout=config.get_time("smtpd_timeout"),
        session_time_limit=config.get_time("smtpd_session_time_limit"),
        soft_error_limit=config.get_int("smtpd_soft_error_limit"),
        hard_error_limit=config.get_int("smtpd_hard_error_limit"),
        error_sleep_time=config.get_time("smtpd_error_sleep_time"),
        junk_command_limit=config.get_int("smtpd_junk_command_limit"),
        forbid_bare_newline=config.get_bool("smtpd_forbid_bare_newline"),
        strict_rfc821=config.get_bool("strict_rfc821_envelopes"),
        queue_minfree=config.get_size("queue_minfree"),
        queue_directory=config.get_path("queue_directory"),
        peername_lookup=config.get_bool("smtpd_peername_lookup"),
        connection_count_limit=config.get_int("smtpd_client_connection_count_limit"),
    )
