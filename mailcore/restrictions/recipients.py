"""Recipient (and sender) validation: reject_unlisted_recipient / reject_unlisted_sender.

Owns: Postfix's check_rcpt_maps — an address that a canonical or virtual alias map knows is
fine; an unknown address in a virtual alias domain, a relocated user, and an address of the
local / virtual mailbox / relay class that its recipient table does not list are refused
at RCPT time (550 5.1.1 "User unknown in … table", 550 5.1.6 "User has moved to …"), so
unknown users never turn into bounces later (no backscatter).

Must not: refuse when a class has no table configured (Postfix accepts then).

Invariants: postmaster, MAILER-DAEMON and the double-bounce local parts are always known in
local domains; a table that cannot answer gives 451 4.3.0 (try again), never 550.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailcore.addrclass import AddressClass
from mailcore.restrictions.addresses import resolve
from mailcore.restrictions.replies import dsn_fix
from mailcore.restrictions.run import DUNNO, Run
from mailcore.restrictions.types import CLASS_SENDER

_ALWAYS_LOCAL = ("postmaster", "mailer-daemon")


async def _known(run: Run, specs: Sequence[str], address: str) -> bool:
    return bool(specs) and (await run.res.rewriter.find(specs, address)).match is not None


async def check_recipient_maps(run: Run, address: str, cls: str) -> int:
    """DUNNO when the address may exist, else the refusal for an unknown one."""
    settings = run.res.settings
    resolved = await resolve(run.res.rewriter, run.res.classifier, address)
    flat = resolved.address
    for specs in (settings.recipient_canonical_maps, settings.canonical_maps,
                  settings.virtual_alias_maps):
        if await _known(run, specs, flat):
            return DUNNO
    unknown_dsn = "5.1.0" if cls == CLASS_SENDER else "5.1.1"
    kind = resolved.address_class
    if kind is AddressClass.VIRTUAL_ALIAS:
        return run.reject(settings.virtual_alias_code, dsn_fix(unknown_dsn, cls),
                          f"<{address}>: {cls} rejected: User unknown in virtual alias table")
    moved = await run.res.rewriter.relocated(flat)
    if moved is not None:
        return run.reject(550, dsn_fix("5.1.6", cls),
                          f"<{address}>: {cls} rejected: User has moved to {moved}")
    table = _class_table(run, kind, resolved.local_part)
    if table is None:
        return DUNNO
    specs, code, label = table
    if await _known(run, specs, flat):
        return DUNNO
    suffix = f" in {label}" if settings.show_table_name else ""
    return run.reject(code, unknown_dsn, f"<{address}>: {cls} rejected: User unknown{suffix}")


def _class_table(run: Run, kind: AddressClass, local: str
                 ) -> tuple[Sequence[str], int, str] | None:
    s = run.res.settings
    if kind is AddressClass.LOCAL:
        if not s.local_recipient_maps:
            return None
        if local in (*_ALWAYS_LOCAL, s.double_bounce_sender.lower()):
            return None
        return s.local_recipient_maps, s.local_recipient_code, "local recipient table"
    if kind is AddressClass.VIRTUAL_MAILBOX and s.virtual_mailbox_maps:
        return s.virtual_mailbox_maps, s.virtual_mailbox_code, "virtual mailbox table"
    if kind is AddressClass.RELAY and s.relay_recipient_maps:
        return s.relay_recipient_maps, s.relay_recipient_code, "relay recipient table"
    return None
