"""The main.cf parameters of address rewriting, read once per Config snapshot, and the trace.

Owns: turning Config values into a frozen ``RewriteSettings`` (class lists validated, limits
as ints), the ``Step`` record that ``mailcore route`` prints, and the small ``Trace`` that
collects steps when tracing is on.
Must not: open tables or look anything up.
Invariants: an unknown class name in *_classes or propagate_unmatched_extensions is a
ConfigError naming the parameter, as Postfix refuses to start with one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailcore.config import Config
from mailcore.errors import ConfigError
from mailcore.rewrite.forms import Completion

ADDRESS_CLASSES = frozenset(
    {"envelope_sender", "envelope_recipient", "header_sender", "header_recipient"}
)
EXTENSION_CLASSES = frozenset({"canonical", "virtual", "alias", "forward", "include", "generic"})


@dataclass(frozen=True)
class Step:
    """One thing the rewriter did, for ``mailcore route`` and debugging.

    stage: the parameter or rule set ("rewrite", "canonical_maps", "masquerade_domains", ...);
    address: its input; tables: the tables consulted; keys: the keys tried, in order;
    table/key/value: the entry that matched (None when nothing did); result: the address(es)
    after the step; note: anything else worth saying (limits, exceptions, self-mapping).
    """

    stage: str
    address: str
    result: tuple[str, ...]
    tables: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    table: str | None = None
    key: str | None = None
    value: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage, "address": self.address, "result": list(self.result),
            "tables": list(self.tables), "keys": list(self.keys), "table": self.table,
            "key": self.key, "value": self.value, "note": self.note,
        }


@dataclass
class Trace:
    """Collects steps when enabled; a disabled trace ignores them (the fast path)."""

    enabled: bool = False
    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> None:
        if self.enabled:
            self.steps.append(step)


def _classes(config: Config, name: str, allowed: frozenset[str]) -> frozenset[str]:
    values = frozenset(item.lower() for item in config.get_list(name))
    unknown = sorted(values - allowed)
    if unknown:
        origin = config.origins.get(name)
        raise ConfigError(
            f"parameter {name}: unknown class {unknown[0]!r} (expected one of "
            f"{', '.join(sorted(allowed))})",
            file=origin.file if origin else None, line=origin.line if origin else None,
        )
    return values


@dataclass(frozen=True)
class RewriteSettings:
    myorigin: str
    myhostname: str
    local: Completion
    remote: Completion | None  # None: remote_header_rewrite_domain is empty
    delimiter: str
    propagate: frozenset[str]
    canonical_maps: tuple[str, ...]
    sender_canonical_maps: tuple[str, ...]
    recipient_canonical_maps: tuple[str, ...]
    canonical_classes: frozenset[str]
    sender_canonical_classes: frozenset[str]
    recipient_canonical_classes: frozenset[str]
    masquerade_domains: tuple[str, ...]
    masquerade_exceptions: tuple[str, ...]
    masquerade_classes: frozenset[str]
    virtual_alias_maps: tuple[str, ...]
    recursion_limit: int
    expansion_limit: int
    address_length_limit: int
    always_bcc: str
    sender_bcc_maps: tuple[str, ...]
    recipient_bcc_maps: tuple[str, ...]
    duplicate_filter_limit: int
    enable_original_recipient: bool
    relocated_maps: tuple[str, ...]
    empty_address_recipient: str
    resolve_dequoted_address: bool
    unknown_text: str
    unknown_code: int

    @classmethod
    def from_config(cls, config: Config) -> RewriteSettings:
        flags = {name: config.get_bool(name) for name in (
            "append_at_myorigin", "append_dot_mydomain", "swap_bangpath", "allow_percent_hack")}

        def completion(origin: str, domain: str) -> Completion:
            return Completion(origin, domain, flags["append_at_myorigin"],
                              flags["append_dot_mydomain"], flags["swap_bangpath"],
                              flags["allow_percent_hack"])

        remote_domain = config.get("remote_header_rewrite_domain").strip()
        return cls(
            myorigin=config.get("myorigin").lower(),
            myhostname=config.get("myhostname"),
            local=completion(config.get("myorigin"), config.get("mydomain")),
            remote=completion(remote_domain, remote_domain) if remote_domain else None,
            delimiter=config.get("recipient_delimiter"),
            propagate=_classes(config, "propagate_unmatched_extensions", EXTENSION_CLASSES),
            canonical_maps=config.get_tables("canonical_maps"),
            sender_canonical_maps=config.get_tables("sender_canonical_maps"),
            recipient_canonical_maps=config.get_tables("recipient_canonical_maps"),
            canonical_classes=_classes(config, "canonical_classes", ADDRESS_CLASSES),
            sender_canonical_classes=_classes(config, "sender_canonical_classes",
                                              ADDRESS_CLASSES),
            recipient_canonical_classes=_classes(config, "recipient_canonical_classes",
                                                 ADDRESS_CLASSES),
            masquerade_domains=config.get_list("masquerade_domains"),
            masquerade_exceptions=config.get_list("masquerade_exceptions"),
            masquerade_classes=_classes(config, "masquerade_classes", ADDRESS_CLASSES),
            virtual_alias_maps=config.get_tables("virtual_alias_maps"),
            recursion_limit=config.get_int("virtual_alias_recursion_limit"),
            expansion_limit=config.get_int("virtual_alias_expansion_limit"),
            address_length_limit=config.get_int("virtual_alias_address_length_limit"),
            always_bcc=config.get("always_bcc").strip(),
            sender_bcc_maps=config.get_tables("sender_bcc_maps"),
            recipient_bcc_maps=config.get_tables("recipient_bcc_maps"),
            duplicate_filter_limit=config.get_int("duplicate_filter_limit"),
            enable_original_recipient=config.get_bool("enable_original_recipient"),
            relocated_maps=config.get_tables("relocated_maps"),
            empty_address_recipient=config.get("empty_address_recipient") or "MAILER-DAEMON",
            resolve_dequoted_address=config.get_bool("resolve_dequoted_address"),
            unknown_text="User unknown" + (
                " in virtual alias table" if config.get_bool("show_user_unknown_table_name")
                else ""),
            unknown_code=config.get_int("unknown_virtual_alias_reject_code"),
        )


Warn = Callable[[str], None]
