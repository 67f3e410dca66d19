"""The lmtp agent's main.cf parameters, read once into a frozen LmtpSettings.

Owns: which parameters the LMTP client reads and their types; lmtp_assume_final and
lmtp_line_length_limit are read even though mailcore's parameter table does not list them.
Must not: connect, resolve names, or keep a reference to the Config.
Invariants: a bad value is a ConfigError naming the file and line the value came from.
Parameters: lmtp_lhlo_name, lmtp_tcp_port, myhostname, queue_directory,
lmtp_{connect,lhlo,mail,rcpt,data_init,data_xfer,data_done,quit}_timeout,
lmtp_skip_5xx_greeting, lmtp_assume_final, lmtp_line_length_limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mailcore.config import Config
from mailcore.config.types import BadValue, to_bool, to_int
from mailcore.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class LmtpSettings:
    lhlo_name: str
    tcp_port: str
    myhostname: str
    queue_directory: Path
    connect_timeout: float
    lhlo_timeout: float
    mail_timeout: float
    rcpt_timeout: float
    data_init_timeout: float
    data_xfer_timeout: float
    data_done_timeout: float
    quit_timeout: float
    skip_5xx_greeting: bool = True
    assume_final: bool = False
    line_length_limit: int = 998

    @classmethod
    def from_config(cls, config: Config) -> LmtpSettings:
        def t(name: str) -> float:
            return config.get_time(f"lmtp_{name}_timeout")

        return cls(
            lhlo_name=config.get("lmtp_lhlo_name"), tcp_port=config.get("lmtp_tcp_port"),
            myhostname=config.get("myhostname"),
            queue_directory=config.get_path("queue_directory"),
            connect_timeout=t("connect"), lhlo_timeout=t("lhlo"), mail_timeout=t("mail"),
            rcpt_timeout=t("rcpt"), data_init_timeout=t("data_init"),
            data_xfer_timeout=t("data_xfer"), data_done_timeout=t("data_done"),
            quit_timeout=t("quit"), skip_5xx_greeting=config.get_bool("lmtp_skip_5xx_greeting"),
            assume_final=_optional(config, "lmtp_assume_final", to_bool, False),
            line_length_limit=_optional(config, "lmtp_line_length_limit", to_int, 998),
        )  # fmt: skip


def _optional(config: Config, name: str, convert: Callable[[str], T], default: T) -> T:
    """A Postfix parameter mailcore's parameter table does not list yet: its default when
    unset, else its value converted (a bad value is a configuration error)."""
    text = config.get(name)
    if not text:
        return default
    try:
        return convert(text)
    except BadValue as exc:
        origin = config.origins.get(name)
        raise ConfigError(f"parameter {name}: {exc}", file=origin.file if origin else None,
                          line=origin.line if origin else None) from None
