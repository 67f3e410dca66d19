"""smtpd access restrictions: who may send what to whom (smtpd_*_restrictions).

Owns: evaluating Postfix's restriction lists for each SMTP stage and returning a typed
``Verdict`` — the reply code, enhanced status and text Postfix would send.

Must not: speak SMTP, sleep, or count errors; smtpd does that with the verdict.

Invariants: a restriction list is evaluated left to right and stops at the first restriction
that decides (permit, reject or defer); an unknown restriction name is a configuration error
found when the lists are built, not at the first RCPT. Parameters: smtpd_relay_restrictions,
smtpd_recipient_restrictions, mynetworks, mydestination, relay_domains,
virtual_alias_domains, virtual_mailbox_domains, reject_code, defer_code,
relay_domains_reject_code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailcore.config import Config
from mailcore.errors import ConfigError
from mailcore.model import ClientInfo
from mailcore.tables import TableSet
from mailcore.tables.matchlist import AddressList, DomainList

PERMIT = "permit"
REJECT = "reject"
DEFER = "defer"


@dataclass(frozen=True)
class Verdict:
    action: str  # permit, reject or defer
    code: int = 250
    dsn: str = "2.0.0"
    text: str = "Ok"

    @property
    def reply(self) -> str:
        return f"{self.code} {self.dsn} {self.text}"


@dataclass(frozen=True)
class Facts:
    """What the restrictions may look at, at the stage being checked."""

    stage: str  # connect, helo, mail, rcpt, data, end_of_data
    client: ClientInfo
    helo: str = ""
    sender: str | None = None
    recipient: str | None = None


Check = Callable[[Facts], Awaitable["Verdict | None"]]


class Restrictions:
    """The restriction lists of one Config snapshot (build a new one on reload)."""

    def __init__(self, config: Config, tables: TableSet):
        self._config = config
        items = config.get_list("mynetworks")
        self._mynetworks = AddressList(items, tables, match_subdomains=True)
        self._local = DomainList(
            [*config.get_list("mydestination"), *config.get_list("virtual_alias_domains"),
             *config.get_list("virtual_mailbox_domains")],
            tables, match_subdomains=False,
        )
        self._relay = DomainList(config.get_list("relay_domains"), tables, match_subdomains=True)
        self._relay_list = self._build("smtpd_relay_restrictions")
        self._recipient_list = self._build("smtpd_recipient_restrictions")
        if not self._relay_list and not self._recipient_list:
            raise ConfigError(
                "smtpd_relay_restrictions and smtpd_recipient_restrictions are both empty; "
                "one of them must reject mail to other domains (reject_unauth_destination)",
                file=str(config.config_dir / "main.cf"),
            )

    def _build(self, parameter: str) -> list[Check]:
        builders: dict[str, Callable[[], Check]] = {
            "permit": lambda: _constant(Verdict(PERMIT)),
            "reject": lambda: _constant(self._verdict(REJECT, "reject_code", "5.7.1",
                                                      "Access denied")),
            "defer": lambda: _constant(self._verdict(DEFER, "defer_code", "4.7.1",
                                                     "Try again later")),
            "permit_mynetworks": lambda: self._permit_mynetworks,
            "permit_sasl_authenticated": lambda: self._permit_sasl,
            "reject_unauth_destination": lambda: self._unauth_destination(REJECT),
            "defer_unauth_destination": lambda: self._unauth_destination(DEFER),
            "permit_auth_destination": lambda: self._permit_auth_destination,
        }
        checks = []
        for name in self._config.get_list(parameter):
            builder = builders.get(name.lower())
            if builder is None:
                raise ConfigError(f"parameter {parameter}: unknown restriction: {name}",
                                  file=str(self._config.config_dir / "main.cf"))
            checks.append(builder())
        return checks

    def _verdict(self, action: str, code_param: str, dsn: str, text: str) -> Verdict:
        return Verdict(action, self._config.get_int(code_param), dsn, text)

    async def check(self, facts: Facts) -> Verdict | None:
        """None: nothing decided, go on. A permit or a refusal otherwise."""
        if facts.stage != "rcpt":
            return None
        for checks in (self._relay_list, self._recipient_list):
            verdict = await _evaluate(checks, facts)
            if verdict is not None and verdict.action != PERMIT:
                return verdict
        return Verdict(PERMIT)

    async def _permit_mynetworks(self, facts: Facts) -> Verdict | None:
        if facts.client.address and await self._mynetworks.matches(facts.client.address):
            return Verdict(PERMIT)
        return None

    async def _permit_sasl(self, facts: Facts) -> Verdict | None:
        return Verdict(PERMIT) if facts.client.sasl_user else None

    async def _is_auth_destination(self, recipient: str) -> bool:
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        if not domain:
            return True  # a bare local part is ours (it gets $myorigin appended)
        return await self._local.matches(domain) or await self._relay.matches(domain)

    def _unauth_destination(self, action: str) -> Check:
        async def check(facts: Facts) -> Verdict | None:
            if facts.recipient is None or await self._is_auth_destination(facts.recipient):
                return None
            if action == DEFER:
                return Verdict(DEFER, 454, "4.7.1", f"<{facts.recipient}>: Relay access denied")
            code = self._config.get_int("relay_domains_reject_code")
            return Verdict(REJECT, code, "5.7.1", f"<{facts.recipient}>: Relay access denied")
        return check

    async def _permit_auth_destination(self, facts: Facts) -> Verdict | None:
        if facts.recipient is not None and await self._is_auth_destination(facts.recipient):
            return Verdict(PERMIT)
        return None


def _constant(verdict: Verdict) -> Check:
    async def check(facts: Facts) -> Verdict | None:
        return verdict
    return check


async def _evaluate(checks: list[Check], facts: Facts) -> Verdict | None:
    for check in checks:
        verdict = await check(facts)
        if verdict is not None:
            return verdict
    return None
