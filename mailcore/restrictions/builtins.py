"""The built-in restrictions, each ``async (run, scope, arg) -> DUNNO | OK | REJECTED``.

Owns: what every restriction name means, with Postfix's reply codes and texts:
generic (permit, reject, defer, defer_if_permit, defer_if_reject, reject_unauth_pipelining,
reject_multi_recipient_bounce), client (permit_mynetworks, permit_inet_interfaces,
permit_sasl_authenticated, reject_unknown_client_hostname, reject_rbl_client,
check_client_access), HELO (check_helo_access, reject_invalid_helo_hostname,
reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname), sender (check_sender_access,
reject_non_fqdn_sender, reject_unknown_sender_domain, reject_rhsbl_sender,
reject_unlisted_sender) and recipient (check_recipient_access, permit_auth_destination,
reject_unauth_destination, defer_unauth_destination, permit_mx_backup,
reject_non_fqdn_recipient, reject_unknown_recipient_domain, reject_unlisted_recipient).

Must not: walk lists (run.py) or parse configuration (core.py).

Invariants: a restriction whose subject is absent at this stage (no HELO yet, the null
sender, no recipient) answers DUNNO.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailcore.restrictions import access, dnsbl
from mailcore.restrictions.addresses import (
    Resolved,
    domain_part,
    resolve,
    truncate_dot,
    valid_hostaddr,
    valid_hostname,
    valid_mailhost_addr,
)
from mailcore.restrictions.mxbackup import mx_backup
from mailcore.restrictions.recipients import check_recipient_maps
from mailcore.restrictions.run import DUNNO, OK, Builtin, Run, Scope
from mailcore.restrictions.types import (
    CLASS_CLIENT,
    CLASS_HELO,
    CLASS_RECIPIENT,
    CLASS_SENDER,
)


def _what(scope: Scope) -> str:
    return f"<{scope.name}>: {scope.cls}"


# --- generic -------------------------------------------------------------------------------
async def permit(run: Run, scope: Scope, arg: str | None) -> int:
    return OK


async def reject(run: Run, scope: Scope, arg: str | None) -> int:
    return run.reject(run.res.settings.reject_code, "5.7.1",
                      f"{_what(scope)} rejected: Access denied")


async def defer(run: Run, scope: Scope, arg: str | None) -> int:
    return run.reject(run.res.settings.defer_code, "4.3.2",
                      f"{_what(scope)} rejected: Try again later")


async def defer_if_permit(run: Run, scope: Scope, arg: str | None) -> int:
    run.defer_if_permit_(450, "4.7.0", f"{_what(scope)} rejected: defer_if_permit requested")
    return DUNNO


async def defer_if_reject(run: Run, scope: Scope, arg: str | None) -> int:
    run.defer_if_reject_(450, "4.7.0", f"{_what(scope)} rejected: defer_if_reject requested")
    return DUNNO


async def reject_unauth_pipelining(run: Run, scope: Scope, arg: str | None) -> int:
    facts = run.facts
    if facts.pipelined and (facts.protocol.upper() != "ESMTP" or facts.where == "DATA"):
        return run.reject(503, "5.5.0", f"{_what(scope)} rejected: Improper use of SMTP "
                                        "command pipelining")
    return DUNNO


async def reject_multi_recipient_bounce(run: Run, scope: Scope, arg: str | None) -> int:
    facts = run.facts
    if facts.sender == "" and facts.rcpt_count > (1 if facts.where == "DATA" else 0):
        return run.reject(run.res.settings.multi_recipient_bounce_code, "5.5.3",
                          f"{_what(scope)} rejected: Multi-recipient bounce")
    return DUNNO


# --- client --------------------------------------------------------------------------------
async def permit_mynetworks(run: Run, scope: Scope, arg: str | None) -> int:
    client = run.facts.client
    name = client.name if client.name != "unknown" else None
    if client.address and await run.res.mynetworks.matches(client.address, name):
        return OK
    return DUNNO


async def permit_inet_interfaces(run: Run, scope: Scope, arg: str | None) -> int:
    address = run.facts.client.address
    if address and await run.res.classifier.is_local(f"[{address}]"):
        return OK
    return DUNNO


async def permit_sasl_authenticated(run: Run, scope: Scope, arg: str | None) -> int:
    ok = run.res.settings.sasl_enabled and bool(run.facts.client.sasl_user)
    return OK if ok else DUNNO


async def reject_unknown_client_hostname(run: Run, scope: Scope, arg: str | None) -> int:
    client = run.facts.client
    if client.name == "unknown":
        return run.reject(run.res.settings.unknown_client_code, "4.7.1",
                          f"Client host rejected: cannot find your hostname, [{client.address}]")
    return DUNNO


async def reject_unknown_reverse_client_hostname(run: Run, scope: Scope,
                                                 arg: str | None) -> int:
    client = run.facts.client
    if client.reverse_name == "unknown":
        return run.reject(run.res.settings.unknown_client_code, "4.7.1",
                          "Client host rejected: cannot find your reverse hostname, "
                          f"[{client.address}]")
    return DUNNO


async def check_client_access(run: Run, scope: Scope, arg: str | None) -> int:
    client = run.facts.client
    sub = Scope(client.display, CLASS_CLIENT, scope.default_access)
    return await access.check_client(run, sub, arg or "")


async def reject_rbl_client(run: Run, scope: Scope, arg: str | None) -> int:
    return await dnsbl.reject_rbl_client(run, arg or "")


async def reject_rhsbl_client(run: Run, scope: Scope, arg: str | None) -> int:
    name = run.facts.client.name
    if name == "unknown":
        return DUNNO
    return await dnsbl.reject_rhsbl(run, arg or "", name, CLASS_CLIENT)


# --- HELO ----------------------------------------------------------------------------------
def _helo_scope(run: Run, scope: Scope) -> Scope:
    return Scope(run.facts.helo, CLASS_HELO, scope.default_access)


def _invalid_hostaddr(run: Run, helo: str) -> int:
    inner = helo[1:-1] if len(helo) > 2 and helo.endswith("]") else helo
    if valid_mailhost_addr(inner):
        return DUNNO
    return run.reject(run.res.settings.invalid_hostname_code, "5.5.2",
                      f"<{helo}>: {CLASS_HELO} rejected: invalid ip address")


async def check_helo_access(run: Run, scope: Scope, arg: str | None) -> int:
    helo = run.facts.helo
    if not helo:
        return DUNNO
    status, _ = await access.check_domain(run, _helo_scope(run, scope), arg or "", helo)
    return status


async def reject_invalid_helo_hostname(run: Run, scope: Scope, arg: str | None) -> int:
    helo = run.facts.helo
    if not helo:
        return DUNNO
    if helo.startswith("["):
        return _invalid_hostaddr(run, helo)
    name = truncate_dot(helo)
    if valid_hostname(name) or valid_hostaddr(name):
        return DUNNO
    return run.reject(run.res.settings.invalid_hostname_code, "5.5.2",
                      f"<{helo}>: {CLASS_HELO} rejected: Invalid name")


async def reject_non_fqdn_helo_hostname(run: Run, scope: Scope, arg: str | None) -> int:
    helo = run.facts.helo
    if not helo:
        return DUNNO
    if helo.startswith("["):
        return _invalid_hostaddr(run, helo)
    name = truncate_dot(helo)
    if valid_hostname(name) and "." in name:
        return DUNNO
    return run.reject(run.res.settings.non_fqdn_code, "5.5.2",
                      f"<{helo}>: {CLASS_HELO} rejected: need fully-qualified hostname")


async def reject_unknown_helo_hostname(run: Run, scope: Scope, arg: str | None) -> int:
    helo = run.facts.helo
    if not helo:
        return DUNNO
    if helo.startswith("["):
        return _invalid_hostaddr(run, helo)
    result = await run.res.dns().mail_domain(helo)
    what = f"<{helo}>: {CLASS_HELO} rejected: Host not found"
    if result.status == "not_found":
        return run.reject(run.res.settings.unknown_hostname_code, "4.7.1", what)
    if result.temporary:
        return _tempfail(run, run.res.settings.unknown_helo_tempfail, "4.7.1", what)
    return DUNNO


def _tempfail(run: Run, action: str, dsn: str, text: str) -> int:
    if action == "defer":
        return run.reject(450, dsn, text)
    if action == "defer_if_reject":
        run.defer_if_reject_(450, dsn, text)
    else:
        run.defer_if_permit_(450, dsn, text)
    return DUNNO


# --- sender and recipient ------------------------------------------------------------------
def _non_fqdn(run: Run, address: str, cls: str) -> int:
    domain = domain_part(address)
    if domain.startswith("[") and domain.endswith("]"):
        return DUNNO
    name = truncate_dot(domain)
    if name and valid_hostname(name) and "." in name:
        return DUNNO
    return run.reject(run.res.settings.non_fqdn_code, "4.5.2",
                      f"<{address}>: {cls} rejected: need fully-qualified address")


async def _unknown_domain(run: Run, address: str, cls: str) -> int:
    resolved: Resolved = await resolve(run.res.rewriter, run.res.classifier, address)
    domain = resolved.domain
    if not domain or resolved.final or domain.startswith("["):
        return DUNNO
    result = await run.res.dns().mail_domain(domain)
    dsn = "4.1.8" if cls == CLASS_SENDER else "4.1.2"
    what = f"<{address}>: {cls} rejected: Domain not found"
    if result.status == "not_found":
        return run.reject(run.res.settings.unknown_address_code, dsn, what)
    if result.temporary:
        return _tempfail(run, run.res.settings.unknown_address_tempfail, dsn, what)
    return DUNNO


async def check_sender_access(run: Run, scope: Scope, arg: str | None) -> int:
    sender = run.facts.sender
    if sender is None:
        return DUNNO
    sub = Scope(sender, CLASS_SENDER, scope.default_access)
    return await access.check_mail(run, sub, arg or "", sender)


async def reject_non_fqdn_sender(run: Run, scope: Scope, arg: str | None) -> int:
    sender = run.facts.sender
    return _non_fqdn(run, sender, CLASS_SENDER) if sender else DUNNO


async def reject_unknown_sender_domain(run: Run, scope: Scope, arg: str | None) -> int:
    sender = run.facts.sender
    return await _unknown_domain(run, sender, CLASS_SENDER) if sender else DUNNO


async def reject_rhsbl_sender(run: Run, scope: Scope, arg: str | None) -> int:
    sender = run.facts.sender
    return await dnsbl.reject_rhsbl(run, arg or "", sender, CLASS_SENDER) if sender else DUNNO


async def reject_rhsbl_helo(run: Run, scope: Scope, arg: str | None) -> int:
    helo = run.facts.helo
    return await dnsbl.reject_rhsbl(run, arg or "", helo, CLASS_HELO) if helo else DUNNO


async def reject_unlisted_sender(run: Run, scope: Scope, arg: str | None) -> int:
    sender = run.facts.sender
    if not sender or run.sender_maps_checked:
        return DUNNO
    run.sender_maps_checked = True
    return await check_recipient_maps(run, sender, CLASS_SENDER)


async def check_recipient_access(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if recipient is None:
        return DUNNO
    sub = Scope(recipient, CLASS_RECIPIENT, scope.default_access)
    return await access.check_mail(run, sub, arg or "", recipient)


async def permit_auth_destination(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if recipient is None:
        return DUNNO
    return OK if await _auth_destination(run, recipient) else DUNNO


async def _auth_destination(run: Run, recipient: str) -> bool:
    resolved = await resolve(run.res.rewriter, run.res.classifier, recipient)
    if "@" not in resolved.address:
        return True
    if not run.res.settings.allow_untrusted_routing and resolved.routed:
        return False
    return resolved.final or resolved.address_class.value == "relay"


async def reject_unauth_destination(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if recipient is None or await _auth_destination(run, recipient):
        return DUNNO
    return run.reject(run.res.settings.relay_code, "5.7.1",
                      f"<{recipient}>: Relay access denied")


async def defer_unauth_destination(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if recipient is None or await _auth_destination(run, recipient):
        return DUNNO
    return run.reject(run.res.settings.relay_code - 100, "4.7.1",
                      f"<{recipient}>: Relay access denied")


async def reject_non_fqdn_recipient(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    return _non_fqdn(run, recipient, CLASS_RECIPIENT) if recipient else DUNNO


async def reject_unknown_recipient_domain(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    return await _unknown_domain(run, recipient, CLASS_RECIPIENT) if recipient else DUNNO


async def reject_rhsbl_recipient(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if not recipient:
        return DUNNO
    return await dnsbl.reject_rhsbl(run, arg or "", recipient, CLASS_RECIPIENT)


async def reject_unlisted_recipient(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    if not recipient or run.recipient_maps_checked:
        return DUNNO
    run.recipient_maps_checked = True
    return await check_recipient_maps(run, recipient, CLASS_RECIPIENT)


async def permit_mx_backup(run: Run, scope: Scope, arg: str | None) -> int:
    recipient = run.recipient
    return await mx_backup(run, recipient) if recipient else DUNNO


BUILTINS: Mapping[str, Builtin] = MappingProxyType({
    "permit": permit, "reject": reject, "defer": defer,
    "defer_if_permit": defer_if_permit, "defer_if_reject": defer_if_reject,
    "reject_unauth_pipelining": reject_unauth_pipelining,
    "reject_multi_recipient_bounce": reject_multi_recipient_bounce,
    "permit_mynetworks": permit_mynetworks, "permit_inet_interfaces": permit_inet_interfaces,
    "permit_sasl_authenticated": permit_sasl_authenticated,
    "reject_unknown_client_hostname": reject_unknown_client_hostname,
    "reject_unknown_client": reject_unknown_client_hostname,
    "reject_unknown_reverse_client_hostname": reject_unknown_reverse_client_hostname,
    "check_client_access": check_client_access, "reject_rbl_client": reject_rbl_client,
    "reject_rhsbl_client": reject_rhsbl_client,
    "check_helo_access": check_helo_access,
    "reject_invalid_helo_hostname": reject_invalid_helo_hostname,
    "reject_invalid_hostname": reject_invalid_helo_hostname,
    "reject_non_fqdn_helo_hostname": reject_non_fqdn_helo_hostname,
    "reject_non_fqdn_hostname": reject_non_fqdn_helo_hostname,
    "reject_unknown_helo_hostname": reject_unknown_helo_hostname,
    "reject_unknown_hostname": reject_unknown_helo_hostname,
    "reject_rhsbl_helo": reject_rhsbl_helo,
    "check_sender_access": check_sender_access,
    "reject_non_fqdn_sender": reject_non_fqdn_sender,
    "reject_unknown_sender_domain": reject_unknown_sender_domain,
    "reject_rhsbl_sender": reject_rhsbl_sender,
    "reject_unlisted_sender": reject_unlisted_sender,
    "check_recipient_access": check_recipient_access,
    "permit_auth_destination": permit_auth_destination,
    "reject_unauth_destination": reject_unauth_destination,
    "defer_unauth_destination": defer_unauth_destination,
    "permit_mx_backup": permit_mx_backup,
    "reject_non_fqdn_recipient": reject_non_fqdn_recipient,
    "reject_unknown_recipient_domain": reject_unknown_recipient_domain,
    "reject_rhsbl_recipient": reject_rhsbl_recipient,
    "reject_unlisted_recipient": reject_unlisted_recipient,
    "check_recipient_maps": reject_unlisted_recipient,
})

# Restrictions followed by an argument: a type:table or a DNS list domain.
TABLE_ARGUMENT = frozenset({"check_client_access", "check_helo_access",
                            "check_sender_access", "check_recipient_access"})
DOMAIN_ARGUMENT = frozenset({"reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_helo",
                             "reject_rhsbl_sender", "reject_rhsbl_recipient"})
# Enough to stop mail to other domains (Postfix's "specify at least one working instance").
RELAY_STOPPERS = ("reject_unauth_destination", "defer_unauth_destination", "reject",
                  "defer", "defer_if_permit")
