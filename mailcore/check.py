"""``mailcore check`` (postfix check): everything that can be found wrong before mail flows.

Owns: opening and probing every lookup table the configuration names, building the smtpd
restriction lists and the pipe services (which validates them), and warnings about unused
parameters, unsafe settings and permissions.

Must not: change anything; it only reads configuration, tables and file metadata.

Invariants: a finding names the parameter or file it is about; errors mean mail cannot flow
as configured (exit status 1), warnings mean it may, but probably not as intended.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mailcore.config import Config
from mailcore.errors import ConfigError, MailcoreError
from mailcore.queue import minfree_warning
from mailcore.tables import SUPPORTED_TYPES, TableSet

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    level: str  # error, warning or info
    text: str


async def check(config: Config) -> list[Finding]:
    findings = [Finding(WARNING, warning) for warning in config.warnings]
    tables = TableSet(base_dir=config.config_dir)
    try:
        table_findings = await _tables(config, tables)
        findings += table_findings
        findings += _restrictions(config, tables, table_findings)
    finally:
        tables.close()
    findings += _pipe_services(config)
    findings += _unsafe_settings(config)
    findings += _permissions(config)
    warning = minfree_warning(config.get_size("queue_minfree"),
                              config.get_size("message_size_limit"))
    if warning:
        findings.append(Finding(WARNING, warning))
    findings.append(Finding(INFO, _privileges()))
    return findings


# Tables that only a command writes (newaliases builds alias_database); mail never reads them
# under that name, so a missing one is not a problem for check.
_NOT_LOOKED_UP = frozenset({"alias_database"})


def table_specs(config: Config) -> list[tuple[str, str]]:
    """(parameter, type:name) for every table the configuration names."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    # Parameters set in main.cf first: a table is reported under the name the admin wrote.
    names = sorted(config.names(), key=lambda n: (n not in config.explicit, n))
    for name in names:
        if name in _NOT_LOOKED_UP:
            continue
        spec = config.spec(name)
        if spec is None or spec.kind not in ("tables", "list"):
            continue
        for item in config.get_list(name):
            item = item.lstrip("!")
            kind, sep, _ = item.partition(":")
            if sep and kind.lower() in SUPPORTED_TYPES and item not in seen:
                seen.add(item)
                found.append((name, item))
    return found


async def _tables(config: Config, tables: TableSet) -> list[Finding]:
    findings: list[Finding] = []
    for parameter, spec in table_specs(config):
        try:
            # A probe lookup makes file tables parse now, so their errors show here.
            await tables.open(spec).get("mailcore-check-probe")
        except MailcoreError as exc:
            findings.append(Finding(ERROR, f"parameter {parameter}: {exc}"))
        findings += _table_file_permissions(spec)
    return findings


def _restrictions(config: Config, tables: TableSet, reported: list[Finding]) -> list[Finding]:
    from mailcore.restrictions import Restrictions

    try:
        Restrictions(config, tables)
    except ConfigError as exc:
        if any(exc.message in finding.text for finding in reported):
            return []  # a broken table already reported under its parameter
        return [Finding(ERROR, str(exc))]
    return []


def _pipe_services(config: Config) -> list[Finding]:
    from mailcore.delivery.pipe import PipeAgent

    findings: list[Finding] = []
    for name, service in config.master.transports().items():
        if service.daemon != "pipe":
            continue
        service_config = config.with_overrides(dict(service.overrides), service_name=name)
        try:
            PipeAgent(service_config, service, _no_content)
        except ConfigError as exc:
            findings.append(Finding(ERROR, str(exc)))
    return findings


async def _no_content(queue_id: str) -> AsyncIterator[bytes]:
    # check never delivers; the pipe agent only needs a content source to be built.
    return
    yield b""  # pragma: no cover


def _unsafe_settings(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    for item in config.get_list("mynetworks"):
        network = _network(item)
        if network is not None and network.prefixlen < (8 if network.version == 4 else 32):
            findings.append(Finding(WARNING, f"mynetworks contains {item}: every client in it "
                                             "may relay (an open relay to that network)"))
    relay = [r.lower() for r in config.get_list("smtpd_relay_restrictions")]
    recipient = [r.lower() for r in config.get_list("smtpd_recipient_restrictions")]
    for name, items in (("smtpd_relay_restrictions", relay),
                        ("smtpd_recipient_restrictions", recipient)):
        if items[:1] == ["permit"]:
            findings.append(Finding(WARNING, f"{name} starts with permit: this is an open relay"))
    if config.get("default_privs").strip() in ("root", "0"):
        findings.append(Finding(ERROR, "default_privs must not be a privileged account"))
    for name in ("allow_mail_to_commands", "allow_mail_to_files"):
        if "include" in [c.lower() for c in config.get_list(name)]:
            findings.append(Finding(WARNING, f"{name} includes 'include': any :include: file "
                                             "can run commands or write files"))
    if not config.get_bool("smtpd_forbid_bare_newline"):
        findings.append(Finding(WARNING, "smtpd_forbid_bare_newline = no: bare LF is accepted "
                                         "(it can never end DATA, but other MTAs may differ)"))
    return findings


def _network(item: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = item.replace("[", "").replace("]", "")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _permissions(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    for path in (config.config_dir / "main.cf", config.config_dir / "master.cf"):
        findings += _writable_by_others(path)
    queue = config.get_path("queue_directory")
    if queue.exists():
        info = queue.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            findings.append(Finding(WARNING, f"{queue}: queue directory is writable by "
                                             "group or others"))
        if info.st_uid != os.geteuid():
            findings.append(Finding(WARNING, f"{queue}: queue directory is owned by uid "
                                             f"{info.st_uid}, not by this user"))
    return findings


def _table_file_permissions(spec: str) -> list[Finding]:
    kind, _, name = spec.partition(":")
    if kind.lower() not in ("hash", "btree", "lmdb", "cdb", "texthash", "regexp", "pcre",
                            "cidr", "sqlite") or not name.startswith("/"):
        return []
    return _writable_by_others(Path(name))


def _writable_by_others(path: Path) -> list[Finding]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return [Finding(WARNING, f"{path}: writable by group or others; anyone who can "
                                 "change it controls mail routing")]
    return []


def _privileges() -> str:
    from mailcore.delivery.privileges import privilege_report

    return privilege_report()
