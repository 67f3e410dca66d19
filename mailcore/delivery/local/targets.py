"""The final steps of one local delivery: mailbox, Maildir, /file, |command, passing a
recipient to another transport (Postfix mailbox.c, file.c, command.c, deliver_pass).

Owns: choosing the mailbox (mailbox_command(_maps), home_mailbox, mail_spool_directory,
trailing "/" = Maildir), whose rights each write or command uses (the recipient; root rights
become default_privs), allow_mail_to_files/allow_mail_to_commands, the Delivered-To policy
(prepend_delivered_header) and the result texts.
Must not: expand aliases or .forward files (expand.py does); block the event loop (file work
runs through Privileges in a worker thread).
Invariants: one ``Targets`` per delivery request, never shared between requests.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from mailcore.delivery.local.command import (
    command_argv,
    command_env,
    local_expand,
    run_command,
)
from mailcore.delivery.local.expand import ALIAS, Attr, Run, table_file
from mailcore.delivery.local.users import User
from mailcore.delivery.mailbox import (
    CopyHeaders,
    MailboxError,
    MessageFile,
    deliver_maildir,
    deliver_mbox,
)
from mailcore.delivery.privileges import Identity, PrivilegeError
from mailcore.model import DeliveryRequest, DeliveryResult, RecipientRef
from mailcore.tables import lookup_address

if TYPE_CHECKING:
    from mailcore.delivery.local import LocalAgent

Agent = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]


class Targets:
    def __init__(self, agent: LocalAgent, request: DeliveryRequest, message: MessageFile,
                 ref: RecipientRef) -> None:
        self.agent = agent
        self.settings = agent.settings
        self.tables = agent.tables
        self.users = agent.users
        self.privileges = agent.privileges
        self.request = request
        self.message = message
        self.ref = ref
        self.warn = agent.warn

    # --- helpers expand.py uses -----------------------------------------------------------
    async def is_local(self, address: str) -> bool:
        return await self.agent.is_local(address)

    def identity(self, user: User) -> Identity:
        return self.privileges.effective(Identity(user.uid, user.gid))

    async def rights_identity(self, rights: User | None) -> Identity:
        """/file and |command rights: the owner's, or default_privs instead of root's."""
        if rights is None or rights.uid == 0:
            default = await self.users.by_name(self.settings.default_privs)
            if default is None or default.uid == 0:
                raise PrivilegeError(f"default_privs user {self.settings.default_privs} "
                                     "not found or privileged")
            return self.identity(default)
        return self.identity(rights)

    async def read_as(self, rights: User | None, path: str) -> tuple[os.stat_result, str]:
        identity = await self.rights_identity(rights)

        def read() -> tuple[os.stat_result, str]:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return st, ""
                with os.fdopen(os.dup(fd), "rb") as f:
                    return st, f.read(1 << 20).decode("utf-8", "replace")
            finally:
                os.close(fd)

        return await self.privileges.run(identity, read)

    async def table_owner(self, spec: str) -> User | None:
        """The alias database owner's rights; root-owned (or no file) means default_privs."""
        path = table_file(spec)
        if path is None:
            return None
        try:
            uid = os.stat(path).st_uid
        except OSError:
            return None
        return None if uid == 0 else await self.users.by_uid(uid)

    async def home_exists(self, user: User) -> bool:
        try:
            await self.privileges.run(self.identity(user), lambda: os.stat(user.home))
        except OSError:
            return False
        return True

    def expansion_names(self, attr: Attr, user: User | None) -> Mapping[str, str]:
        return {
            "user": attr.user, "home": user.home if user else "",
            "shell": user.shell if user else "", "extension": attr.extension,
            "recipient_delimiter": self.settings.recipient_delimiter if attr.extension
            else "", "domain": attr.domain, "local": attr.local,
            "recipient": attr.address, "mailbox": attr.user, "sender": attr.sender,
            "original_recipient": self.ref.orig_rcpt or "", "envid": self.request.envid or "",
        }

    def headers(self, attr: Attr, kind: str, *, mbox: bool) -> CopyHeaders:
        delivered = attr.delivered if kind in self.settings.prepend_delivered else None
        return CopyHeaders(sender=attr.sender, delivered_to=delivered,
                           orig_rcpt=attr.orig_rcpt, from_line=mbox or kind == "command",
                           quote_from=mbox, blank_line=mbox)

    # --- mailbox.c ------------------------------------------------------------------------
    async def mailbox(self, run: Run, attr: Attr) -> bool:
        if run.been_here(f"mailbox {attr.local}"):
            return True
        s = self.settings
        transport = await self._map_lookup(s.mailbox_transport_maps, attr.user)
        if transport or s.mailbox_transport:
            await self.pass_to(run, attr, transport or s.mailbox_transport)
            return True
        user = await self.users.by_name(attr.user)
        if user is None:
            return False
        attr = replace(attr, rights=user)
        if not s.frozen_delivered_to:
            attr = replace(attr, delivered=attr.address)
        command = await self._map_lookup(s.mailbox_command_maps, attr.user)
        if command or s.mailbox_command:
            # not $name-expanded, as in Postfix: the command reads $USER etc. from its
            # environment, where every value has passed command_expansion_filter
            await self._run_command(run, attr, command or s.mailbox_command,
                                    self.identity(user), user)
            return True
        if s.home_mailbox.endswith("/"):
            await self._maildir(run, attr, user, f"{user.home}/{s.home_mailbox}", "maildir")
        elif s.mail_spool_directory.endswith("/"):
            path = f"{s.mail_spool_directory}{attr.user}/"
            await self._maildir(run, attr, user, path, "maildir")
        else:
            await self._mbox(run, attr, user)
        return True

    async def _map_lookup(self, specs: tuple[str, ...], key: str) -> str:
        if not specs:
            return ""
        match = await lookup_address([self.tables.open(s) for s in specs], key)
        return match.value if match else ""

    async def _mbox(self, run: Run, attr: Attr, user: User) -> None:
        s = self.settings
        me = self.identity(user)
        if s.home_mailbox:
            path, spool = f"{user.home}/{s.home_mailbox}", me
        else:
            path, spool = f"{s.mail_spool_directory.rstrip('/')}/{attr.user}", \
                self._spool_identity(me)
        chown = (me.uid, me.gid) if spool != me and self.privileges.root else None
        headers = self.headers(attr, "file", mbox=True)
        owner = me.uid if s.strict_mailbox_ownership else None

        def job() -> None:
            deliver_mbox(path, self.message, headers, locks=s.locks, now=time.time(),
                         size_limit=s.mailbox_size_limit, chown=chown, owner_uid=owner)

        await self._write(run, job, spool, "delivered to mailbox",
                          f"cannot update mailbox {path} for user {attr.user}. ")

    def _spool_identity(self, me: Identity) -> Identity:
        """Postfix: world-writable spool → the user; group-writable → user + spool group;
        otherwise root, and the new mailbox is chowned to the user."""
        try:
            st = os.stat(self.settings.mail_spool_directory)
        except OSError:
            return me
        if st.st_mode & stat.S_IWOTH:
            return me
        if st.st_mode & stat.S_IWGRP:
            return replace(me, gid=st.st_gid)
        return self.privileges.effective(Identity(0, 0))

    async def _maildir(self, run: Run, attr: Attr, user: User, path: str, kind: str) -> None:
        headers = self.headers(attr, "file", mbox=False)
        limit, host = self.settings.mailbox_size_limit, self.settings.myhostname

        def job() -> None:
            deliver_maildir(path, self.message, headers, size_limit=limit, hostname=host,
                            now=time.time())

        await self._write(run, job, self.identity(user), "delivered to maildir",
                          f"cannot update maildir {path} for user {attr.user}. ")

    async def _write(self, run: Run, job: Callable[[], None], identity: Identity,
                     success: str, prefix: str) -> None:
        try:
            await self.privileges.run(identity, job)
        except MailboxError as exc:
            return run.record(exc.dsn, prefix + exc.text)
        except OSError as exc:
            return run.record("4.3.0", prefix + (exc.strerror or str(exc)))
        run.record("2.0.0", success)

    # --- file.c ---------------------------------------------------------------------------
    async def file(self, run: Run, attr: Attr, path: str) -> None:
        if run.been_here(f"file {attr.exp_type} {path}"):
            return None
        if attr.exp_type not in self.settings.allow_files:
            return run.record("5.7.1", "mail to file is restricted")
        try:
            identity = await self.rights_identity(attr.rights)
        except PrivilegeError as exc:
            return run.record("4.3.0", str(exc))
        s = self.settings
        if path.endswith("/"):
            headers = self.headers(attr, "file", mbox=False)

            def maildir() -> None:
                deliver_maildir(path, self.message, headers, size_limit=s.mailbox_size_limit,
                                hostname=s.myhostname, now=time.time())

            return await self._write(run, maildir, identity, f"delivered to file: {path}",
                                     f"cannot append message to file {path}: ")
        headers = self.headers(attr, "file", mbox=True)
        locks = replace(s.locks, dotlock_may_fail=True)

        def mbox() -> None:
            deliver_mbox(path, self.message, headers, locks=locks, now=time.time(),
                         size_limit=s.mailbox_size_limit, allow_device=True)

        await self._write(run, mbox, identity, f"delivered to file: {path}",
                          f"cannot append message to file {path}: ")

    # --- command.c ------------------------------------------------------------------------
    async def command(self, run: Run, attr: Attr, command: str) -> None:
        if run.been_here(f"command {attr.exp_type} {command}"):
            return None
        if attr.exp_type not in self.settings.allow_commands:
            return run.record("5.7.1", "mail to command is restricted")
        try:
            identity = await self.rights_identity(attr.rights)
        except PrivilegeError as exc:
            return run.record("4.3.0", str(exc))
        user = attr.rights if attr.rights and attr.rights.uid == identity.uid else None
        await self._run_command(run, attr, command, identity, user)

    async def _run_command(self, run: Run, attr: Attr, command: str, identity: Identity,
                           user: User | None) -> None:
        s = self.settings
        names = self.expansion_names(attr, user)
        env = command_env(names, s.export_environment, s.command_filter, os.environ)
        cwd = "/"
        if s.command_execution_directory:
            cwd, _ = local_expand(s.command_execution_directory, names, s.command_filter)
        elif user is not None and await self.home_exists(user):
            cwd = user.home
        headers = self.headers(attr, "command", mbox=False)
        outcome = await run_command(
            command, self.message, headers, argv=command_argv(command, s.local_command_shell),
            env=env, cwd=cwd or "/", credentials=self.privileges.command_credentials(identity),
            time_limit=s.command_time_limit, now=time.time())
        run.record(outcome.dsn, outcome.text)

    # --- deliver_pass ---------------------------------------------------------------------
    async def fallback_transport(self, attr: Attr) -> str:
        found = await self._map_lookup(self.settings.fallback_transport_maps, attr.user)
        return found or self.settings.fallback_transport

    async def pass_to(self, run: Run, attr: Attr, transport: str) -> None:
        """Hand the recipient to another agent, as Postfix's deliver_pass does."""
        name, _, nexthop = transport.partition(":")
        agent = self.agent.pass_agent(name) if self.agent.pass_agent else None
        if agent is None:
            return run.record("4.3.0", f"mail transport unavailable: {name}")
        ref = replace(self.ref, address=attr.address)
        request = replace(self.request, recipients=(ref,), transport=name,
                          nexthop=nexthop or self.settings.myhostname)
        result = await agent(request)
        for r in result.recipients:
            run.record(r.dsn, r.reason, r.action)
        if not result.recipients:
            run.record("4.3.0", f"no result from transport {name}")


__all__ = ["ALIAS", "Targets"]
