"""check_client_access, check_helo_access, check_sender_access, check_recipient_access.

Owns: which keys each check tries in which order (access(5): host name and its parent
domains then the address and its parent networks; user+ext@domain, user@domain, domain and
parents, user+ext@, user@; ``<>`` for the null sender), and what a table's answer means
(Postfix's check_table_result): OK/RELAY/all-digits, REJECT, DEFER, 4xx/5xx text, DUNNO,
DEFER_IF_PERMIT, DEFER_IF_REJECT, WARN, INFO, HOLD, DISCARD, REDIRECT, FILTER, PREPEND and
a nested restriction list or class name.

Must not: cache answers — a changed table file is seen by the next lookup.

Invariants: an OK for a recipient whose local part still carries routing operators is taken
as DUNNO (allow_untrusted_routing = no), so an access table cannot open a relay by accident;
actions that cleanup applies are skipped, with a warning, before MAIL FROM.
"""

from __future__ import annotations

from mailcore.restrictions.addresses import resolve, valid_hostaddr
from mailcore.restrictions.replies import dsn_fix, dsn_split
from mailcore.restrictions.run import DUNNO, MAX_RECURSION, OK, Run, Scope, Step
from mailcore.restrictions.types import CLASS_RECIPIENT
from mailcore.tables import Match, lookup_access
from mailcore.tables.search import search_keys

_DELEGATED = frozenset({"HOLD", "DISCARD", "REDIRECT", "FILTER", "PREPEND"})


def _is_header(text: str) -> bool:
    name, colon, _ = text.partition(":")
    return bool(colon) and bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


async def table_result(run: Run, scope: Scope, table: str, value: str, datum: str) -> int:
    """What one access-table answer means for this request."""
    parts = value.strip().split(None, 1)
    command = parts[0] if parts else ""
    text = parts[1].strip() if len(parts) > 1 else ""
    upper = command.upper()
    settings = run.res.settings
    where = f"<{scope.name}>: {scope.cls}"
    if upper == "DUNNO":
        return DUNNO
    if upper in ("REJECT", "DEFER"):
        code = settings.access_map_reject_code if upper == "REJECT" else \
            settings.access_map_defer_code
        dsn, reason = dsn_split("5.7.1" if upper == "REJECT" else "4.7.1", text)
        return run.reject(code, dsn_fix(dsn, scope.cls),
                          f"{where} rejected: {reason or 'Access denied'}")
    if upper in ("WARN", "INFO"):
        run.event(upper.lower(), text)
        return DUNNO
    if upper in _DELEGATED:
        if run.facts.sender is None:
            run.warning(f"access table {table}: with smtpd_delay_reject=no, action {upper} "
                        "is always skipped in client or helo restrictions")
            return DUNNO
        return _delegated(run, scope, table, upper, text, datum)
    if upper in ("DEFER_IF_PERMIT", "DEFER_IF_REJECT"):
        dsn, reason = dsn_split("4.7.1", text)
        defer = run.defer_if_permit_ if upper == "DEFER_IF_PERMIT" else run.defer_if_reject_
        defer(450, dsn_fix(dsn, scope.cls), f"{where} rejected: {reason or 'Service unavailable'}")
        return DUNNO
    if command.isdigit() and not text:
        return OK  # an all-numeric answer: a time stamp of some out-of-band authentication
    if len(command) == 3 and command.isdigit() and command[0] in "45" and text:
        dsn, reason = dsn_split(f"{command[0]}.7.1", text)
        return run.reject(int(command), dsn_fix(dsn, scope.cls),
                          f"{where} rejected: {reason or 'Access denied'}")
    if upper in ("OK", "RELAY"):
        return OK
    return await _nested(run, scope, table, value)


def _delegated(run: Run, scope: Scope, table: str, action: str, text: str, datum: str) -> int:
    where = f"<{scope.name}>: {scope.cls}"
    if action == "HOLD":
        run.event("hold", f"{where} {text or 'triggers HOLD action'}")
        run.hold = True
    elif action == "DISCARD":
        run.event("discard", f"{where} {text or 'triggers DISCARD action'}")
        run.discard = True
        return OK
    elif action == "REDIRECT":
        if "@" not in text:
            run.warning(f'access table {table} entry "{datum}" requires user@domain target')
        else:
            run.event("redirect", f"{where} triggers REDIRECT {text}")
            run.redirect = text
    elif action == "FILTER":
        if not text or ":" not in text:
            run.warning(f'access table {table} entry "{datum}" '
                        + ("has FILTER entry without value" if not text
                           else "requires transport:destination"))
        else:
            run.event("filter", f"{where} triggers FILTER {text}")
            run.filter = text
    elif not _is_header(text):
        run.warning(f'access table {table} entry "{datum}" requires header: text')
    elif text not in run.prepend:
        run.prepend.append(text)
    return DUNNO


async def _nested(run: Run, scope: Scope, table: str, value: str) -> int:
    """A right-hand side that is itself a restriction list (or a class name)."""
    if ":" in value:
        run.abort_config(f"access table {table} has entry with lookup table: {value}; "
                         "define a restriction class and specify its name instead")
    if run.recursion > MAX_RECURSION:
        run.abort_config(f"access table {table} entry {value} causes unreasonable recursion")
    steps = run.res.parse_runtime(value)
    if steps is None:
        run.abort_config(f"access table {table} entry {value}: unknown restriction")
        return DUNNO
    if not steps:
        run.warning(f"access table {table} entry {value} has empty value")
        return OK
    return await run.generic(steps, scope)


async def _answer(run: Run, scope: Scope, table: str, match: Match | None, datum: str) -> int:
    if match is None:
        return DUNNO
    return await table_result(run, scope, table, match.value, datum)


async def check_domain(run: Run, scope: Scope, spec: str, domain: str) -> tuple[int, bool]:
    """check_domain_access: the name and its parent domains (not for numeric names)."""
    table = run.res.tables.open(spec)
    low = domain.lower()
    if valid_hostaddr(low):
        value = await table.get(low)
        match = Match(spec, low, value) if value is not None else None
    else:
        match = await lookup_access([table], "hostname", low,
                                    match_subdomains=run.res.settings.access_parent_matches)
    return await _answer(run, scope, spec, match, domain), match is not None


async def check_address(run: Run, scope: Scope, spec: str, address: str) -> tuple[int, bool]:
    """check_addr_access: the IP address and its parent networks."""
    table = run.res.tables.open(spec)
    match = await lookup_access([table], "ipaddr", address.lower(), match_subdomains=False)
    return await _answer(run, scope, spec, match, address), match is not None


async def check_client(run: Run, scope: Scope, spec: str) -> int:
    client = run.facts.client
    status, found = await check_domain(run, scope, spec, client.name)
    if status != DUNNO or found:
        return status
    status, _ = await check_address(run, scope, spec, client.address)
    return status


async def check_mail(run: Run, scope: Scope, spec: str, address: str) -> int:
    """check_mail_access on the resolved address; the null sender looks up ``<>``."""
    table = run.res.tables.open(spec)
    if not address:
        value = await table.get(run.res.settings.null_key)
        return await _answer(run, scope, spec, Match(spec, "<>", value) if value else None,
                             address)
    resolved = await resolve(run.res.rewriter, run.res.classifier, address)
    match = await lookup_access([table], "address", resolved.address,
                                match_subdomains=run.res.settings.access_parent_matches,
                                delimiter=run.res.settings.delimiter)
    status = await _answer(run, scope, spec, match, address)
    suspicious = (not run.res.settings.allow_untrusted_routing and resolved.routed
                  and scope.cls == CLASS_RECIPIENT)
    return DUNNO if status == OK and suspicious else status


async def rbl_template(run: Run, domain: str) -> str | None:
    """rbl_reply_maps: the reply template for one DNSBL domain."""
    specs = run.res.settings.rbl_reply_maps
    if not specs:
        return None
    match = await search_keys([run.res.tables.open(s) for s in specs], [domain.lower()])
    return match.value if match else None


__all__ = ["Step", "check_client", "check_domain", "check_mail", "rbl_template",
           "table_result"]
