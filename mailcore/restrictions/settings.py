"""The main.cf parameters the restriction evaluator reads, read once per Config snapshot.

Must not: read configuration anywhere else in the package.

Parameters: reject_code, defer_code, relay_domains_reject_code, access_map_reject_code,
access_map_defer_code, non_fqdn_reject_code, invalid_hostname_reject_code,
unknown_address_reject_code, unknown_address_tempfail_action, unknown_hostname_reject_code,
unknown_helo_hostname_tempfail_action, unknown_client_reject_code, maps_rbl_reject_code,
multi_recipient_bounce_reject_code, default_rbl_reply (raw, expanded per reply),
rbl_reply_maps, smtpd_expansion_filter, smtpd_delay_reject, allow_untrusted_routing,
smtpd_null_access_lookup_key, soft_bounce, smtpd_reject_unlisted_recipient,
smtpd_reject_unlisted_sender, unknown_local_recipient_reject_code,
unknown_virtual_alias_reject_code, unknown_virtual_mailbox_reject_code,
unknown_relay_recipient_reject_code, show_user_unknown_table_name, local_recipient_maps,
virtual_alias_maps, virtual_mailbox_maps, relay_recipient_maps, canonical_maps,
recipient_canonical_maps, double_bounce_sender, parent_domain_matches_subdomains,
recipient_delimiter, smtpd_sasl_auth_enable.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.config import Config
from mailcore.errors import ConfigError


@dataclass(frozen=True)
class RestrictionSettings:
    reject_code: int = 554
    defer_code: int = 450
    relay_code: int = 554
    access_map_reject_code: int = 554
    access_map_defer_code: int = 450
    non_fqdn_code: int = 504
    invalid_hostname_code: int = 501
    unknown_address_code: int = 450
    unknown_address_tempfail: str = "defer_if_permit"
    unknown_hostname_code: int = 450
    unknown_helo_tempfail: str = "defer_if_permit"
    unknown_client_code: int = 450
    rbl_code: int = 554
    multi_recipient_bounce_code: int = 550
    default_rbl_reply: str = ""
    rbl_reply_maps: tuple[str, ...] = ()
    expansion_filter: str = ""
    delay_reject: bool = True
    allow_untrusted_routing: bool = False
    null_key: str = "<>"
    soft_bounce: bool = False
    reject_unlisted_recipient: bool = True
    reject_unlisted_sender: bool = False
    local_recipient_code: int = 550
    virtual_alias_code: int = 550
    virtual_mailbox_code: int = 550
    relay_recipient_code: int = 550
    show_table_name: bool = True
    local_recipient_maps: tuple[str, ...] = ()
    virtual_alias_maps: tuple[str, ...] = ()
    virtual_mailbox_maps: tuple[str, ...] = ()
    relay_recipient_maps: tuple[str, ...] = ()
    canonical_maps: tuple[str, ...] = ()
    recipient_canonical_maps: tuple[str, ...] = ()
    double_bounce_sender: str = "double-bounce"
    access_parent_matches: bool = True
    mynetworks_parent_matches: bool = True
    mx_networks_parent_matches: bool = True
    delimiter: str = ""
    sasl_enabled: bool = False


def _unescape(text: str) -> str:
    """The C-style escapes smtpd_expansion_filter is written with (\\t, \\40, \\\\)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            octal = ""
            while i + 1 + len(octal) < len(text) and len(octal) < 3 and \
                    text[i + 1 + len(octal)] in "01234567":
                octal += text[i + 1 + len(octal)]
            if octal:
                out.append(chr(int(octal, 8)))
                i += 1 + len(octal)
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# Postfix 3.7 defaults of parameters mailcore's parameter table does not list (yet).
_FALLBACK = {
    "invalid_hostname_reject_code": "501", "maps_rbl_reject_code": "554",
    "multi_recipient_bounce_reject_code": "550", "non_fqdn_reject_code": "504",
    "smtpd_sasl_auth_enable": "no", "unknown_address_tempfail_action": "$reject_tempfail_action",
    "unknown_helo_hostname_tempfail_action": "$reject_tempfail_action",
}


def _value(config: Config, name: str) -> str:
    raw = config.raw(name)
    value = config.expand(raw if raw is not None else _FALLBACK[name]).strip()
    if not value and name.endswith("_tempfail_action"):
        return "defer_if_permit"  # reject_tempfail_action's own default
    return value


def _int(config: Config, name: str) -> int:
    text = _value(config, name)
    if not text.isdigit():
        raise ConfigError(f"parameter {name}: bad numerical value {text!r}",
                          file=str(config.config_dir / "main.cf"))
    return int(text)


def _bool(text: str) -> bool:
    return text.lower() in ("yes", "true", "1")


def restriction_settings(config: Config) -> RestrictionSettings:
    parents = {p.lower() for p in config.get_list("parent_domain_matches_subdomains")}
    return RestrictionSettings(
        reject_code=config.get_int("reject_code"),
        defer_code=config.get_int("defer_code"),
        relay_code=config.get_int("relay_domains_reject_code"),
        access_map_reject_code=config.get_int("access_map_reject_code"),
        access_map_defer_code=config.get_int("access_map_defer_code"),
        non_fqdn_code=_int(config, "non_fqdn_reject_code"),
        invalid_hostname_code=_int(config, "invalid_hostname_reject_code"),
        unknown_address_code=config.get_int("unknown_address_reject_code"),
        unknown_address_tempfail=_value(config, "unknown_address_tempfail_action"),
        unknown_hostname_code=config.get_int("unknown_hostname_reject_code"),
        unknown_helo_tempfail=_value(config, "unknown_helo_hostname_tempfail_action"),
        unknown_client_code=config.get_int("unknown_client_reject_code"),
        rbl_code=_int(config, "maps_rbl_reject_code"),
        multi_recipient_bounce_code=_int(config, "multi_recipient_bounce_reject_code"),
        default_rbl_reply=config.raw("default_rbl_reply") or "",
        rbl_reply_maps=config.get_tables("rbl_reply_maps"),
        expansion_filter=_unescape(config.raw("smtpd_expansion_filter") or ""),
        delay_reject=config.get_bool("smtpd_delay_reject"),
        allow_untrusted_routing=config.get_bool("allow_untrusted_routing"),
        null_key=config.get("smtpd_null_access_lookup_key"),
        soft_bounce=config.get_bool("soft_bounce"),
        reject_unlisted_recipient=config.get_bool("smtpd_reject_unlisted_recipient"),
        reject_unlisted_sender=config.get_bool("smtpd_reject_unlisted_sender"),
        local_recipient_code=config.get_int("unknown_local_recipient_reject_code"),
        virtual_alias_code=config.get_int("unknown_virtual_alias_reject_code"),
        virtual_mailbox_code=config.get_int("unknown_virtual_mailbox_reject_code"),
        relay_recipient_code=config.get_int("unknown_relay_recipient_reject_code"),
        show_table_name=config.get_bool("show_user_unknown_table_name"),
        local_recipient_maps=config.get_tables("local_recipient_maps"),
        virtual_alias_maps=config.get_tables("virtual_alias_maps"),
        virtual_mailbox_maps=config.get_tables("virtual_mailbox_maps"),
        relay_recipient_maps=config.get_tables("relay_recipient_maps"),
        canonical_maps=config.get_tables("canonical_maps"),
        recipient_canonical_maps=config.get_tables("recipient_canonical_maps"),
        double_bounce_sender=config.get("double_bounce_sender"),
        access_parent_matches="smtpd_access_maps" in parents,
        mynetworks_parent_matches="mynetworks" in parents,
        mx_networks_parent_matches="permit_mx_backup_networks" in parents,
        delimiter=config.get("recipient_delimiter"),
        sasl_enabled=_bool(_value(config, "smtpd_sasl_auth_enable")),
    )
