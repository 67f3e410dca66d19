"""The immutable configuration snapshot every module receives.

Owns: combining main.cf settings, Postfix's defaults (params.py), host-computed defaults and
master.cf ``-o`` overrides into one frozen ``Config``; typed access; the "unused parameter"
warnings. Reload builds a new snapshot and swaps it; nothing here mutates.

Must not: open lookup tables (only their ``type:name`` specs live here) or read files other
than main.cf and master.cf.

Invariants: every known parameter's value is expanded and type-checked when the snapshot is
built, so a bad value fails at load time with its file and line, never mid-delivery.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from mailcore import __version__
from mailcore.config import types as vt
from mailcore.config.expand import ExpansionError, expand
from mailcore.config.maincf import parse_main_cf
from mailcore.config.master import MasterConfig, load_master_cf, parse_master_cf
from mailcore.config.params import PARAMETERS, TRANSPORT_SUFFIXES, ParamSpec
from mailcore.errors import ConfigError
from mailcore.netinfo import interface_addresses, mynetworks_for_style


def _empty() -> Mapping:
    return MappingProxyType({})


def _postfix_names() -> frozenset[str]:
    text = resources.files("mailcore.config").joinpath("postfix-3.7-parameter-names.txt")
    return frozenset(text.read_text().split())


POSTFIX_PARAMETER_NAMES = _postfix_names()


@dataclass(frozen=True)
class Origin:
    file: str
    line: int


@dataclass(frozen=True)
class Config:
    """One immutable view of main.cf + master.cf; ``get`` returns expanded values."""

    config_dir: Path
    explicit: Mapping[str, str] = field(default_factory=_empty)
    origins: Mapping[str, Origin] = field(default_factory=_empty)
    computed: Mapping[str, str] = field(default_factory=_empty)
    overrides: Mapping[str, str] = field(default_factory=_empty)
    master: MasterConfig = field(default_factory=lambda: parse_master_cf("", "master.cf"))
    warnings: tuple[str, ...] = ()

    # --- raw and expanded values -------------------------------------------------------
    def raw(self, name: str) -> str | None:
        """The value as written (override, main.cf, computed default, Postfix default)."""
        for source in (self.overrides, self.explicit, self.computed):
            if name in source:
                return source[name]
        spec = self.spec(name)
        return spec.default if spec else None

    def default(self, name: str) -> str | None:
        if name in self.computed:
            return self.computed[name]
        spec = self.spec(name)
        return spec.default if spec else None

    def get(self, name: str) -> str:
        """Expanded value; unknown names expand to the empty string as in Postfix."""
        cached = self._expanded.get(name)
        return cached if cached is not None else self.expand(self.raw(name) or "")

    def expand(self, text: str) -> str:
        try:
            return expand(text, self.raw)
        except ExpansionError as exc:
            raise ConfigError(str(exc), file=self._main_cf) from None

    @cached_property
    def _expanded(self) -> Mapping[str, str]:
        return MappingProxyType({name: self._expand_one(name) for name in self.names()})

    def _expand_one(self, name: str) -> str:
        spec = self.spec(name)
        if spec and spec.kind == "raw":
            return self.raw(name) or ""
        try:
            return expand(self.raw(name) or "", self.raw)
        except ExpansionError as exc:
            raise self._error(name, str(exc)) from None

    # --- typed access ------------------------------------------------------------------
    def get_bool(self, name: str) -> bool:
        return self._typed(name, vt.to_bool)

    def get_int(self, name: str) -> int:
        return self._typed(name, vt.to_int)

    def get_time(self, name: str, default_unit: str = "s") -> float:
        return self._typed(name, lambda text: vt.to_time(text, default_unit))

    def get_size(self, name: str) -> int:
        return self._typed(name, vt.to_size)

    def get_list(self, name: str) -> tuple[str, ...]:
        return self._typed(name, vt.split_list)

    def get_path(self, name: str) -> Path:
        """A directory or file parameter; a relative value is taken from the config directory,
        so a sample configuration can keep its queue beside itself."""
        path = Path(self.get(name))
        return path if path.is_absolute() else (self.config_dir / path).resolve()

    def get_tables(self, name: str) -> tuple[str, ...]:
        """``type:name`` specs of a *_maps parameter, in order."""
        return self.get_list(name)

    def _typed(self, name, convert):  # type: ignore[no-untyped-def]
        try:
            return convert(self.get(name))
        except vt.BadValue as exc:
            raise self._error(name, f"parameter {name}: {exc}") from None

    def transport_param(self, transport: str, suffix: str) -> str:
        """TRANSPORT_suffix when set, else the default_* name it falls back to (as Postfix)."""
        specific = f"{transport}{suffix}"
        if specific in self.overrides or specific in self.explicit or specific in PARAMETERS:
            return specific
        return TRANSPORT_SUFFIXES[suffix]

    # --- structure ---------------------------------------------------------------------
    def spec(self, name: str) -> ParamSpec | None:
        known = PARAMETERS.get(name)
        if known:
            return known
        for suffix, default_name in TRANSPORT_SUFFIXES.items():
            if name.endswith(suffix) and name[: -len(suffix)] in self._service_names:
                return ParamSpec(name, f"${default_name}", PARAMETERS[default_name].kind)
        return None

    @cached_property
    def _service_names(self) -> frozenset[str]:
        return frozenset(service.name for service in self.master.services)

    def names(self) -> list[str]:
        return sorted(set(PARAMETERS) | set(self.explicit) | set(self.overrides))

    def with_overrides(self, overrides: Mapping[str, str], **context: str) -> Config:
        """A snapshot for one master.cf service: its ``-o`` values and names like service_name."""
        merged = dict(self.overrides) | dict(context) | dict(overrides)
        return replace(self, overrides=MappingProxyType(merged))

    @property
    def _main_cf(self) -> str:
        return str(self.config_dir / "main.cf")

    def _error(self, name: str, message: str) -> ConfigError:
        origin = self.origins.get(name)
        if origin:
            return ConfigError(message, file=origin.file, line=origin.line)
        return ConfigError(message, file=self._main_cf)


def load_config(config_dir: Path | str | None = None) -> Config:
    """Read CONFDIR/main.cf and CONFDIR/master.cf (either may be absent) into a Config."""
    directory = Path(config_dir or os.environ.get("MAILCORE_CONFIG_DIR") or "/etc/mailcore")
    if not directory.is_dir():
        raise ConfigError("configuration directory does not exist", file=str(directory))
    # $config_directory and relative table paths must not depend on the working directory.
    directory = directory.resolve()
    main_path = directory / "main.cf"
    text = _read(main_path)
    explicit: dict[str, str] = {}
    origins: dict[str, Origin] = {}
    for setting in parse_main_cf(text, str(main_path)):
        explicit[setting.name] = setting.value
        origins[setting.name] = Origin(str(main_path), setting.first_line)
    master_path = directory / "master.cf"
    master = load_master_cf(master_path) if master_path.exists() else parse_master_cf("", "")
    config = Config(
        config_dir=directory,
        explicit=MappingProxyType(explicit),
        origins=MappingProxyType(origins),
        master=master,
    )
    config = replace(config, computed=MappingProxyType(_computed_defaults(config)))
    return validate(config)


def from_mapping(settings: Mapping[str, str], *, config_dir: Path | str = ".",
                 master_cf: str = "") -> Config:
    """Build a snapshot without files: the embedding and test-harness entry point."""
    config = Config(
        config_dir=Path(config_dir),
        explicit=MappingProxyType(dict(settings)),
        master=parse_master_cf(master_cf, "<master.cf>"),
    )
    config = replace(config, computed=MappingProxyType(_computed_defaults(config)))
    return validate(config)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None


def _computed_defaults(config: Config) -> dict[str, str]:
    """Postfix computes these from the host; so do we, without any DNS lookup."""
    hostname = socket.gethostname()
    if "." not in hostname:
        hostname += ".localdomain"
    computed = {
        "myhostname": hostname,
        "mail_version": __version__,
        "config_directory": str(config.config_dir),
    }
    myhostname = config.expand(config.explicit.get("myhostname", hostname))
    parent = myhostname.partition(".")[2]
    computed["mydomain"] = parent if "." in parent else "localdomain"
    if "mynetworks" not in config.explicit:
        style = config.expand(config.raw("mynetworks_style") or "")
        try:
            computed["mynetworks"] = " ".join(mynetworks_for_style(style, interface_addresses()))
        except ValueError as exc:
            raise config._error("mynetworks_style", str(exc)) from None
    return computed


def validate(config: Config) -> Config:
    """Expand and type-check every known value; collect unused-parameter warnings."""
    for name in config.names():
        spec = config.spec(name)
        if spec is None:
            continue
        convert = {
            "bool": config.get_bool,
            "int": config.get_int,
            "time": config.get_time,
            "size": config.get_size,
            "list": config.get_list,
            "tables": config.get_tables,
        }.get(spec.kind, config.get)
        convert(name)
    return replace(config, warnings=tuple(_unused_warnings(config)))


def _unused_warnings(config: Config) -> list[str]:
    referenced = _referenced_names(config)
    warnings: list[str] = []
    for name, value in config.explicit.items():
        if config.spec(name) or name in referenced:
            continue
        origin = config.origins.get(name)
        where = f"{origin.file}, line {origin.line}: " if origin else ""
        if name in POSTFIX_PARAMETER_NAMES:
            warnings.append(f"{where}Postfix parameter not implemented by mailcore: {name}={value}")
            continue
        close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{where}unused parameter: {name}={value}{hint}")
    return warnings


def _referenced_names(config: Config) -> set[str]:
    names: set[str] = set()

    def record(name: str) -> str | None:
        names.add(name)
        return config.raw(name)

    for value in config.explicit.values():
        try:
            expand(value, record)
        except ExpansionError:
            continue
    for service in config.master.services:
        for _, value in service.overrides:
            try:
                expand(value, record)
            except ExpansionError:
                continue
        names.update(name for name, _ in service.overrides)
    return names
