"""The main.cf parameters local(8) reads, as one frozen value built from a Config snapshot.

Owns: reading and typing local delivery parameters, including the few Postfix parameters
mailcore's parameter table does not define yet (stale_lock_time, strict_mailbox_ownership,
frozen_delivered_to) with Postfix's defaults.
Must not: open tables or touch files.
Parameters: alias_maps, allow_mail_to_commands, allow_mail_to_files, forward_path,
mailbox_command(_maps), mailbox_transport(_maps), fallback_transport(_maps), home_mailbox,
mail_spool_directory, mailbox_size_limit, mailbox_delivery_lock, deliver_lock_attempts,
deliver_lock_delay, stale_lock_time, recipient_delimiter, prepend_delivered_header,
luser_relay, default_privs, command_time_limit, export_environment,
command_expansion_filter, forward_expansion_filter, local_command_shell,
command_execution_directory, owner_request_special, expand_owner_alias,
strict_mailbox_ownership, frozen_delivered_to, myhostname, myorigin, mydestination,
local_recipient_maps, require_home_directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.config import Config
from mailcore.config import types as vt
from mailcore.delivery.mailbox import LockSettings


@dataclass(frozen=True)
class LocalSettings:
    alias_maps: tuple[str, ...]
    recipient_maps: tuple[str, ...]
    allow_commands: frozenset[str]
    allow_files: frozenset[str]
    forward_path: tuple[str, ...]  # raw, expanded per recipient
    mailbox_command: str  # raw
    mailbox_command_maps: tuple[str, ...]
    mailbox_transport: str
    mailbox_transport_maps: tuple[str, ...]
    fallback_transport: str
    fallback_transport_maps: tuple[str, ...]
    home_mailbox: str
    mail_spool_directory: str
    mailbox_size_limit: int
    locks: LockSettings
    recipient_delimiter: str
    prepend_delivered: frozenset[str]
    luser_relay: str  # raw
    default_privs: str
    command_time_limit: float
    export_environment: tuple[str, ...]
    command_filter: str
    forward_filter: str
    local_command_shell: str
    command_execution_directory: str  # raw
    owner_request_special: bool
    expand_owner_alias: bool
    strict_mailbox_ownership: bool
    frozen_delivered_to: bool
    require_home_directory: bool
    myhostname: str
    myorigin: str
    mydestination: tuple[str, ...]


def _raw_or(config: Config, name: str, default: str) -> str:
    value = config.raw(name)
    return config.expand(value) if value is not None else default


def local_settings(config: Config) -> LocalSettings:
    lock_time = vt.to_time(_raw_or(config, "stale_lock_time", "500s"), "s")
    return LocalSettings(
        alias_maps=config.get_tables("alias_maps"),
        recipient_maps=config.get_tables("local_recipient_maps"),
        allow_commands=frozenset(config.get_list("allow_mail_to_commands")),
        allow_files=frozenset(config.get_list("allow_mail_to_files")),
        forward_path=tuple(p for p in vt.split_list(config.raw("forward_path") or "")),
        mailbox_command=config.raw("mailbox_command") or "",
        mailbox_command_maps=config.get_tables("mailbox_command_maps"),
        mailbox_transport=config.get("mailbox_transport"),
        mailbox_transport_maps=config.get_tables("mailbox_transport_maps"),
        fallback_transport=config.get("fallback_transport"),
        fallback_transport_maps=config.get_tables("fallback_transport_maps"),
        home_mailbox=config.get("home_mailbox"),
        mail_spool_directory=str(config.get_path("mail_spool_directory")),
        mailbox_size_limit=config.get_size("mailbox_size_limit"),
        locks=LockSettings(
            kinds=config.get_list("mailbox_delivery_lock"),
            attempts=config.get_int("deliver_lock_attempts"),
            delay=config.get_time("deliver_lock_delay"),
            stale_time=lock_time,
        ),
        recipient_delimiter=config.get("recipient_delimiter"),
        prepend_delivered=frozenset(config.get_list("prepend_delivered_header")),
        luser_relay=config.raw("luser_relay") or "",
        default_privs=config.get("default_privs"),
        command_time_limit=config.get_time("command_time_limit"),
        export_environment=config.get_list("export_environment"),
        command_filter=config.get("command_expansion_filter"),
        forward_filter=config.get("forward_expansion_filter"),
        local_command_shell=config.get("local_command_shell"),
        command_execution_directory=config.raw("command_execution_directory") or "",
        owner_request_special=config.get_bool("owner_request_special"),
        expand_owner_alias=config.get_bool("expand_owner_alias"),
        strict_mailbox_ownership=vt.to_bool(_raw_or(config, "strict_mailbox_ownership",
                                                    "yes")),
        frozen_delivered_to=vt.to_bool(_raw_or(config, "frozen_delivered_to", "yes")),
        require_home_directory=config.get_bool("require_home_directory"),
        myhostname=config.get("myhostname"),
        myorigin=config.get("myorigin"),
        mydestination=tuple(d.lower() for d in config.get_list("mydestination")),
    )
