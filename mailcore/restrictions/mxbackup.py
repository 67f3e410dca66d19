"""permit_mx_backup: accept mail for domains that list this host as a mail exchanger.

Owns: Postfix's decision — local and final destinations are fine; routed addresses and
address literals are not; a domain without MX is fine when its own A record is ours; with
MX records, one of them must be this host (by name: mydestination; by address: our
interfaces), and with permit_mx_backup_networks set, every address of every best-preference
MX host must lie in those networks. A DNS failure turns a later reject into a 450 4.4.4
(defer_if_reject), never into a permit.

Must not: relay for a domain just because some MX host is unknown.
"""

from __future__ import annotations

from mailcore.restrictions.addresses import resolve
from mailcore.restrictions.run import DUNNO, OK, Run
from mailcore.restrictions.types import CLASS_RECIPIENT


async def _has_my_addr(run: Run, host: str, recipient: str) -> bool:
    result = await run.res.dns().addresses(host)
    if result.temporary:
        run.defer_if_reject_(450, "4.4.4", f"<{recipient}>: {CLASS_RECIPIENT} rejected: "
                                           f"Unable to look up mail exchanger host {host}: "
                                           f"{result.detail}")
        return False
    for address in result.values:
        if await run.res.classifier.is_local(f"[{address}]"):
            return True
    return False


async def _best_mx_in_networks(run: Run, mx: list[tuple[int, str]], recipient: str) -> bool:
    best = min(pref for pref, _ in mx)
    for pref, host in mx:
        if pref != best:
            continue
        result = await run.res.dns().addresses(host)
        if not result.found:
            run.defer_if_reject_(450, "4.4.4", f"<{recipient}>: {CLASS_RECIPIENT} rejected: "
                                               f"Unable to look up host {host} as mail "
                                               "exchanger")
            return False
        for address in result.values:
            if not await run.res.mx_networks.matches(address, host):
                return False
    return True


async def mx_backup(run: Run, recipient: str) -> int:
    resolved = await resolve(run.res.rewriter, run.res.classifier, recipient)
    if "@" not in resolved.address or resolved.address_class.value == "local":
        return OK
    if not run.res.settings.allow_untrusted_routing and resolved.routed:
        return DUNNO
    if resolved.final:
        return OK
    domain = resolved.domain
    if domain.startswith("[") and domain.endswith("]"):
        return DUNNO
    result = await run.res.dns().mx(domain)
    if result.status == "not_found":
        return OK if await _has_my_addr(run, domain, recipient) else DUNNO
    if not result.found:
        run.defer_if_reject_(450, "4.4.4", f"<{recipient}>: {CLASS_RECIPIENT} rejected: "
                                           "Unable to look up mail exchanger information")
        return DUNNO
    mx = []
    for value in result.values:
        pref, _, host = value.partition(" ")
        mx.append((int(pref), host))
    mine = False
    for _, host in mx:
        if await run.res.classifier.is_local(host):
            mine = True
            break
    if not mine:
        for _, host in mx:
            if await _has_my_addr(run, host, recipient):
                mine = True
                break
    if not mine:
        return DUNNO
    if run.res.mx_networks_configured and not await _best_mx_in_networks(run, mx, recipient):
        return DUNNO
    return OK
