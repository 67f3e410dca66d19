"""The virtual delivery agent (Postfix virtual(8)): mailboxes for virtual_mailbox_domains.

Owns: finding a recipient's mailbox in virtual_mailbox_maps (user+ext@domain, user@domain,
@domain), its uid and gid in virtual_uid_maps/virtual_gid_maps (``static:1003`` or tables),
virtual_minimum_uid, and delivery under virtual_mailbox_base — a trailing "/" means Maildir,
else mbox with virtual_mailbox_lock and virtual_mailbox_limit.
Must not: expand aliases, run commands or deliver to files named by anything but the maps.

Invariants: the mailbox path is virtual_mailbox_base joined with the table's result and must
stay inside the base ("..", NUL and control characters in the result are refused), so no
recipient address — even through a regexp table's substitution — names a file elsewhere;
every write runs with the looked-up uid/gid when mailcore runs as root.
Parameters: virtual_mailbox_base, virtual_mailbox_maps, virtual_uid_maps, virtual_gid_maps,
virtual_minimum_uid, virtual_mailbox_limit, virtual_mailbox_lock, recipient_delimiter,
deliver_lock_attempts, deliver_lock_delay, stale_lock_time, myhostname.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailcore.config import Config
from mailcore.config import types as vt
from mailcore.delivery import ContentSource
from mailcore.delivery.mailbox import (
    CopyHeaders,
    LockSettings,
    MailboxError,
    MessageFile,
    deliver_maildir,
    deliver_mbox,
)
from mailcore.delivery.privileges import Identity, Privileges
from mailcore.model import DeliveryRequest, DeliveryResult, RecipientRef, RecipientResult
from mailcore.tables import TableSet, lookup_address

RELAY = "virtual"
CONFIG_ERROR = ("4.3.5", "mail system configuration error")


@dataclass(frozen=True)
class VirtualSettings:
    base: str
    mailbox_maps: tuple[str, ...]
    uid_maps: tuple[str, ...]
    gid_maps: tuple[str, ...]
    minimum_uid: int
    limit: int
    locks: LockSettings
    delimiter: str
    myhostname: str


def virtual_settings(config: Config) -> VirtualSettings:
    stale = config.raw("stale_lock_time")
    return VirtualSettings(
        base=config.get("virtual_mailbox_base"),
        mailbox_maps=config.get_tables("virtual_mailbox_maps"),
        uid_maps=config.get_tables("virtual_uid_maps"),
        gid_maps=config.get_tables("virtual_gid_maps"),
        minimum_uid=config.get_int("virtual_minimum_uid"),
        limit=config.get_size("virtual_mailbox_limit"),
        locks=LockSettings(kinds=config.get_list("virtual_mailbox_lock"),
                           attempts=config.get_int("deliver_lock_attempts"),
                           delay=config.get_time("deliver_lock_delay"),
                           stale_time=vt.to_time(config.expand(stale) if stale else "500s")),
        delimiter=config.get("recipient_delimiter"),
        myhostname=config.get("myhostname"),
    )


class _Failure(Exception):
    def __init__(self, dsn: str, text: str):
        super().__init__(text)
        self.dsn, self.text = dsn, text


def mailbox_path(base: str, result: str) -> str:
    """virtual_mailbox_base + "/" + result, refused when it could leave the base."""
    if not base:
        raise _Failure(*CONFIG_ERROR)
    if any(ord(c) < 32 or ord(c) == 127 for c in result) or not result.strip("/"):
        raise _Failure(*CONFIG_ERROR)
    if ".." in result.split("/"):
        raise _Failure(*CONFIG_ERROR)
    path = f"{base.rstrip('/')}/{result.lstrip('/')}"
    norm_base = os.path.normpath(base)
    if os.path.commonpath([norm_base, os.path.normpath(path)]) != norm_base:
        raise _Failure(*CONFIG_ERROR)
    return path


class VirtualAgent:
    def __init__(self, config: Config, tables: TableSet, content: ContentSource, *,
                 privileges: Privileges | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.settings = virtual_settings(config)
        self.tables = tables
        self.content = content
        self.privileges = privileges or Privileges()
        self.warn: Callable[[str], None] = warn or (lambda text: None)

    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        message = await MessageFile.load(self.content, request.queue_id)
        try:
            results = [await self._one(request, message, ref) for ref in request.recipients]
        finally:
            message.close()
        return DeliveryResult(request.queue_id, tuple(results))

    async def _one(self, request: DeliveryRequest, message: MessageFile,
                   ref: RecipientRef) -> RecipientResult:
        try:
            dsn, text = await self._deliver(request, message, ref)
        except _Failure as exc:
            dsn, text = exc.dsn, exc.text
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.warn(f"{request.queue_id}: virtual delivery to {ref.address}: {exc!r}")
            dsn, text = "4.3.0", "virtual delivery failed: internal error"
        status = {"2": "sent", "5": "bounced"}.get(dsn[:1], "deferred")
        return RecipientResult(ref.seq, status, dsn, text, relay=RELAY)

    async def _lookup(self, specs: tuple[str, ...], address: str, what: str) -> str | None:
        try:
            match = await lookup_address([self.tables.open(s) for s in specs], address,
                                         delimiter=self.settings.delimiter)
        except Exception as exc:
            self.warn(f"{what} lookup for {address}: {exc}")
            raise _Failure("4.3.0", "table lookup failure") from None
        return match.value.strip() if match else None

    async def _identity(self, address: str) -> Identity:
        s = self.settings
        ids: list[int] = []
        for specs, name in ((s.uid_maps, "virtual_uid_maps"), (s.gid_maps, "virtual_gid_maps")):
            value = await self._lookup(specs, address, name) if specs else None
            if value is None or not value.isdigit():
                self.warn(f"recipient {address}: {name[8:11]} not found or bad in {name}")
                raise _Failure(*CONFIG_ERROR)
            ids.append(int(value))
        if ids[0] < s.minimum_uid:
            self.warn(f"recipient {address}: bad uid {ids[0]} in virtual_uid_maps")
            raise _Failure(*CONFIG_ERROR)
        return self.privileges.effective(Identity(ids[0], ids[1]))

    async def _deliver(self, request: DeliveryRequest, message: MessageFile,
                       ref: RecipientRef) -> tuple[str, str]:
        address = ref.address.lower()
        if address in message.delivered:
            return "5.4.6", f"mail forwarding loop for {ref.address}"
        s = self.settings
        result = await self._lookup(s.mailbox_maps, address, "virtual_mailbox_maps")
        if result is None:
            return "5.1.1", f'unknown user: "{address}"'
        path = mailbox_path(s.base, result)
        identity = await self._identity(address)
        maildir = path.endswith("/")
        headers = CopyHeaders(sender=request.sender, delivered_to=address,
                              orig_rcpt=ref.orig_rcpt or ref.address, from_line=not maildir,
                              quote_from=not maildir, blank_line=not maildir)

        def job() -> None:
            if maildir:
                deliver_maildir(path, message, headers, size_limit=s.limit,
                                hostname=s.myhostname, now=time.time())
            else:
                deliver_mbox(path, message, headers, locks=s.locks, size_limit=s.limit,
                             now=time.time(), owner_uid=identity.uid)

        try:
            await self.privileges.run(identity, job)
        except MailboxError as exc:
            kind = "maildir" if maildir else "mailbox"
            return exc.dsn, f"cannot update {kind} {path} for user {address}. {exc.text}"
        return "2.0.0", "delivered to maildir" if maildir else "delivered to mailbox"
