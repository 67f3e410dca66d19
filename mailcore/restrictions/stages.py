"""Postfix's smtpd_check_{client,helo,mail,rcpt,data,eod}: which lists run at which stage.

Owns: the stage drivers. With smtpd_delay_reject = yes (the default) nothing is decided at
connect, HELO or MAIL; at RCPT the client, HELO and sender lists run first (each may only
refuse), then smtpd_relay_restrictions, then (unless that refused)
smtpd_recipient_restrictions, then a pending defer_if_permit, then the implicit recipient
validation. A bare ``postmaster`` recipient passes without any check (RFC 5321 4.5.1).

Must not: decide what single restrictions mean (builtins.py).

Invariants: each driver returns None (stage not evaluated), or the final status with
``run.reply`` set when it is REJECTED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from mailcore.errors import TableError
from mailcore.restrictions.recipients import check_recipient_maps
from mailcore.restrictions.run import DUNNO, REJECTED, Abort, Run, Scope, Step
from mailcore.restrictions.types import (
    CLASS_CLIENT,
    CLASS_DATA,
    CLASS_EOD,
    CLASS_HELO,
    CLASS_RECIPIENT,
    CLASS_SENDER,
    CONNECT,
    DATA,
    END_OF_DATA,
    HELO,
    MAIL,
    RCPT,
)


def _lists(run: Run, name: str) -> tuple[Step, ...]:
    return run.res.lists[f"smtpd_{name}_restrictions"]


async def client_stage(run: Run) -> int:
    if not run.facts.client.address:
        return DUNNO
    run.defer_if_permit = None
    run.reset()
    scope = Scope(run.facts.client.display, CLASS_CLIENT, "check_client_access")
    status = await run.guarded(_lists(run, "client"), scope)
    run.client_deferral = run.defer_if_permit
    return status


async def helo_stage(run: Run) -> int:
    if not run.facts.helo:
        return DUNNO
    run.defer_if_permit = run.client_deferral
    run.reset()
    scope = Scope(run.facts.helo, CLASS_HELO, "check_helo_access")
    status = await run.guarded(_lists(run, "helo"), scope)
    run.helo_deferral = run.defer_if_permit
    return status


async def mail_stage(run: Run) -> int:
    sender = run.facts.sender
    if sender is None:
        return DUNNO
    run.defer_if_permit = run.helo_deferral or run.client_deferral
    run.sender_maps_checked = False
    run.reset()
    status = await run.guarded(_lists(run, "sender"),
                               Scope(sender, CLASS_SENDER, "check_sender_access"))
    run.sender_deferral = run.defer_if_permit
    if (run.res.settings.reject_unlisted_sender and status != REJECTED
            and not run.sender_maps_checked and not run.discard and sender):
        run.sender_maps_checked = True
        status = await _validated(run, sender, CLASS_SENDER)
    return status


async def _validated(run: Run, address: str, cls: str) -> int:
    try:
        return await check_recipient_maps(run, address, cls)
    except Abort as abort:
        return abort.status
    except TableError as exc:
        run.warning(str(exc))
        return run.reject(451, "4.3.0", f"<{address}>: Temporary lookup failure")


async def rcpt_stage(run: Run) -> int:
    recipient = run.recipient or ""
    if recipient.lower() == "postmaster":
        return DUNNO
    run.recipient_maps_checked = False
    if run.res.settings.delay_reject:
        for stage in (client_stage, helo_stage, mail_stage):
            if await stage(run) == REJECTED:
                return REJECTED
    run.defer_if_permit = run.sender_deferral
    scope = Scope(recipient, CLASS_RECIPIENT, "check_recipient_access")
    run.reset()
    status = await run.guarded(_lists(run, "relay"), scope)
    if status != REJECTED:
        run.reset()
        status = await run.guarded(_lists(run, "recipient"), scope)
    if status != REJECTED and run.defer_if_permit is not None:
        status = run.reject_deferral()
    if (run.res.settings.reject_unlisted_recipient and status != REJECTED
            and not run.recipient_maps_checked and not run.discard):
        run.recipient_maps_checked = True
        status = await _validated(run, recipient, CLASS_RECIPIENT)
    return status


async def _content_stage(run: Run, name: str, reply_name: str, cls: str) -> int:
    if run.facts.rcpt_count > 1:
        run.recipient = None  # one recipient's name would mislead: this is about all
    run.defer_if_permit = None
    run.reset()
    status = await run.guarded(_lists(run, name), Scope(reply_name, cls, None))
    if status != REJECTED and run.defer_if_permit is not None:
        status = run.reject_deferral()
    return status


async def _connect(run: Run) -> int | None:
    if run.res.settings.delay_reject or not _lists(run, "client"):
        return None
    return await client_stage(run)


async def _helo(run: Run) -> int | None:
    if run.res.settings.delay_reject or not _lists(run, "helo"):
        return None
    return await helo_stage(run)


async def _mail(run: Run) -> int | None:
    settings = run.res.settings
    if settings.delay_reject or not (_lists(run, "sender") or settings.reject_unlisted_sender):
        return None
    return await mail_stage(run)


async def _data(run: Run) -> int | None:
    if not _lists(run, "data"):
        return None
    return await _content_stage(run, "data", "DATA", CLASS_DATA)


async def _end_of_data(run: Run) -> int | None:
    if not _lists(run, "end_of_data"):
        return None
    return await _content_stage(run, "end_of_data", "END-OF-DATA", CLASS_EOD)


STAGES: Mapping[str, Callable[[Run], Awaitable[int | None]]] = MappingProxyType({
    CONNECT: _connect, HELO: _helo, MAIL: _mail, RCPT: rcpt_stage, DATA: _data,
    END_OF_DATA: _end_of_data,
})
