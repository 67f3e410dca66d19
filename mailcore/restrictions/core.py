"""Restrictions: the smtpd_*_restrictions of one Config snapshot and their evaluation order.

Owns: parsing every restriction list and smtpd_restriction_classes once (an unknown name is
a ConfigError naming main.cf), Postfix's refusal to run without a relay stopper, and the
order of evaluation per SMTP stage — smtpd_delay_reject (client, HELO and sender lists are
evaluated at RCPT), smtpd_relay_restrictions before smtpd_recipient_restrictions, the
carried defer_if_permit, the implicit reject_unlisted_sender / reject_unlisted_recipient at
the end, DATA and END-OF-DATA lists.

Must not: speak SMTP or keep per-session state (the session passes it in ``Facts`` and keeps
what ``Verdict`` hands back).

Parameters: smtpd_client_restrictions, smtpd_helo_restrictions, smtpd_sender_restrictions,
smtpd_relay_restrictions, smtpd_recipient_restrictions, smtpd_data_restrictions,
smtpd_end_of_data_restrictions, smtpd_restriction_classes, mynetworks,
permit_mx_backup_networks, and those of settings.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailcore.addrclass import DomainClassifier
from mailcore.config import Config
from mailcore.config.types import BadValue, split_list
from mailcore.dns import DnsResult, Resolver
from mailcore.errors import ConfigError, TableError
from mailcore.restrictions.builtins import (
    BUILTINS,
    DOMAIN_ARGUMENT,
    RELAY_STOPPERS,
    TABLE_ARGUMENT,
)
from mailcore.restrictions.run import DUNNO, REJECTED, Builtin, Run, Scope, Step
from mailcore.restrictions.settings import RestrictionSettings, restriction_settings
from mailcore.restrictions.stages import STAGES
from mailcore.restrictions.types import PERMIT, Facts, Verdict
from mailcore.rewrite import Rewriter
from mailcore.tables import TableSet
from mailcore.tables.matchlist import AddressList

LISTS = ("smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
         "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
         "smtpd_end_of_data_restrictions")


class DnsLookups(Protocol):
    """What the restrictions ask DNS (mailcore.dns.Resolver; a fake in unit tests)."""

    async def query(self, name: str, rdtype: str) -> DnsResult: ...

    async def addresses(self, name: str) -> DnsResult: ...

    async def mx(self, name: str) -> DnsResult: ...

    async def txt(self, name: str) -> DnsResult: ...

    async def mail_domain(self, name: str) -> DnsResult: ...


@dataclass(frozen=True)
class Resources:
    """Everything a restriction may consult, built once per Config snapshot."""

    settings: RestrictionSettings
    tables: TableSet
    classifier: DomainClassifier
    rewriter: Rewriter
    mynetworks: AddressList
    mx_networks: AddressList
    mx_networks_configured: bool
    builtins: Mapping[str, Builtin]
    classes: Mapping[str, tuple[Step, ...]]
    lists: Mapping[str, tuple[Step, ...]]
    resolver: list[DnsLookups]  # one element, made on first use (no DNS set-up otherwise)
    config: Config

    def dns(self) -> DnsLookups:
        if not self.resolver:
            self.resolver.append(Resolver.from_config(self.config))
        return self.resolver[0]

    def parse_runtime(self, value: str) -> tuple[Step, ...] | None:
        """A restriction list found in an access table; None when a name is unknown."""
        try:
            return parse_steps(split_list(value), self.classes.keys(), "access table")
        except (ConfigError, BadValue):
            return None


def parse_steps(tokens: Sequence[str], classes: object, parameter: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    items = iter(tokens)
    for token in items:
        name = token.lower()
        if name in TABLE_ARGUMENT or name in DOMAIN_ARGUMENT:
            arg = next(items, None)
            if arg is None or (name in TABLE_ARGUMENT and ":" not in arg):
                raise ConfigError(f"parameter {parameter}: restriction {token} needs "
                                  + ("a type:table argument" if name in TABLE_ARGUMENT
                                     else "a domain name argument"))
            steps.append(Step(name, arg))
        elif name in BUILTINS or name == "warn_if_reject" or name in classes:
            steps.append(Step(name))
        elif ":" in token:
            steps.append(Step("table", token))
        else:
            raise ConfigError(f"parameter {parameter}: unknown restriction: {token}")
    return tuple(steps)


def _has_stopper(steps: Sequence[Step], classes: Mapping[str, tuple[Step, ...]],
                 seen: frozenset[str] = frozenset()) -> bool:
    skip = False
    for step in steps:
        if skip:
            skip = False
            continue
        if step.name == "warn_if_reject":
            skip = True
            continue
        if step.name in RELAY_STOPPERS:
            return True
        nested = classes.get(step.name)
        if (nested is not None and step.name not in seen
                and _has_stopper(nested, classes, seen | {step.name})):
            return True
    return False


class Restrictions:
    """The restriction lists of one Config snapshot (build a new one on reload)."""

    def __init__(self, config: Config, tables: TableSet, *,
                 resolver: DnsLookups | None = None) -> None:
        main_cf = str(config.config_dir / "main.cf")
        self._tables, self._resolver = tables, resolver
        try:
            self._res = self._resources(config, tables, resolver)
        except (TableError, BadValue) as exc:
            raise ConfigError(str(exc), file=main_cf) from exc
        except ConfigError as exc:
            raise ConfigError(exc.message, file=exc.file or main_cf, line=exc.line) from exc
        lists = self._res.lists
        if not (_has_stopper(lists["smtpd_relay_restrictions"], self._res.classes)
                or _has_stopper(lists["smtpd_recipient_restrictions"], self._res.classes)):
            raise ConfigError(
                'parameter "smtpd_relay_restrictions" or "smtpd_recipient_restrictions": '
                "specify at least one working instance of: reject_unauth_destination, "
                "defer_unauth_destination, reject, defer or defer_if_permit", file=main_cf)

    @staticmethod
    def _resources(config: Config, tables: TableSet, resolver: DnsLookups | None) -> Resources:
        settings = restriction_settings(config)
        class_names = [c.lower() for c in config.get_list("smtpd_restriction_classes")]
        classes: dict[str, tuple[Step, ...]] = {}
        for name in class_names:
            raw = config.raw(name)
            if not raw or not config.get(name).strip():
                raise ConfigError(f"restriction class `{name}' needs a definition")
            classes[name] = parse_steps(config.get_list(name), class_names, name)
        lists = {p: parse_steps(config.get_list(p), classes.keys(), p) for p in LISTS}
        for parameter in ("smtpd_data_restrictions", "smtpd_end_of_data_restrictions"):
            if any(step.name == "table" for step in lists[parameter]):
                raise ConfigError(f"parameter {parameter}: a bare type:table needs a "
                                  "check_*_access restriction name in front of it")
        for steps in (*lists.values(), *classes.values()):
            for step in steps:
                if step.arg and ":" in step.arg:
                    tables.open(step.arg)  # a missing or broken table is found now
        classifier = DomainClassifier(config, tables)
        mx_items = config.get_list("permit_mx_backup_networks")
        return Resources(
            settings=settings, tables=tables, classifier=classifier,
            rewriter=Rewriter(config, tables, classifier),
            mynetworks=AddressList(config.get_list("mynetworks"), tables,
                                   match_subdomains=settings.mynetworks_parent_matches),
            mx_networks=AddressList(mx_items, tables,
                                    match_subdomains=settings.mx_networks_parent_matches),
            mx_networks_configured=bool(mx_items), builtins=BUILTINS, classes=classes,
            lists=lists, resolver=[resolver] if resolver is not None else [], config=config)

    def for_config(self, config: Config) -> Restrictions:
        """The restrictions of one master.cf listener with its own -o overrides (a
        submission service's smtpd_recipient_restrictions, say), sharing tables and DNS."""
        return Restrictions(config, self._tables, resolver=self._resolver)

    async def check(self, facts: Facts) -> Verdict | None:
        """None when nothing is evaluated at this stage; else the decision and its effects."""
        stage = STAGES.get(facts.stage)
        if stage is None:
            return None
        run = Run(self._res, facts)
        status = await stage(run)
        if status is None:
            return None
        return _verdict(run, status)


def _verdict(run: Run, status: int) -> Verdict:
    effects = {"hold": run.hold, "discard": run.discard and not run.facts.discard,
               "redirect": run.redirect, "filter": run.filter,
               "prepend": tuple(run.prepend), "events": tuple(run.events),
               "deferral": run.defer_if_permit}
    if status == REJECTED and run.reply is not None:
        code, dsn, text = run.reply
        return Verdict("defer" if code < 500 else "reject", code, dsn, text, **effects)
    return Verdict(PERMIT, **effects)


__all__ = ["DUNNO", "Restrictions", "Scope"]
