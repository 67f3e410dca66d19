"""What local(8) does with one recipient: aliases, :include:, .forward, then the mailbox
(Postfix recipient.c, alias.c, include.c, dotforward.c, token.c, unknown.c).

Owns: the recursive expansion with Postfix's rules — alias lookup (full local part, then the
bare user), owner-ALIAS as the sender for errors, the expansion class of every item (alias,
forward, include) that allow_mail_to_commands/allow_mail_to_files test, duplicate
elimination, the nesting limit (a→b→a is bounced as a loop after 100 levels, a self-reference
goes to the mailbox), Delivered-To loop detection, luser_relay and fallback_transport.

Must not: write files or run commands itself (targets.py does); parse recipient addresses
into commands: a recipient address is only ever a name to look up. "|x", "/x" and
":include:" are recognised only inside alias values, :include: files and .forward files.
Invariants: every path ends in exactly one of: outcome recorded, address queued for
resubmission, or nothing (a duplicate).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from mailcore.address import is_hostile_local
from mailcore.delivery.local.command import local_expand
from mailcore.delivery.local.users import User
from mailcore.model import BOUNCED, DEFERRED, SENT
from mailcore.tables import split_table_spec, split_values
from mailcore.tables.aliases import parse_alias_values

MAX_LEVEL = 100
ALIAS, FORWARD, INCLUDE = "alias", "forward", "include"


@dataclass(frozen=True)
class Attr:
    """Postfix DELIVER_ATTR: what one expansion level knows (copied, never mutated)."""

    level: int
    address: str
    sender: str
    delivered: str
    orig_rcpt: str | None
    notify: str | None
    owner: str | None = None
    exp_type: str = ""
    exp_from: str | None = None
    rights: User | None = None  # whose rights /file and |command use (None: default_privs)
    local: str = ""
    user: str = ""
    extension: str = ""
    domain: str = ""


@dataclass(frozen=True)
class Outcome:
    status: str
    dsn: str
    text: str
    action: str = ""
    address: str = ""  # the address being delivered when this outcome was reached


@dataclass
class Run:
    """One queue recipient being delivered: its outcomes and pending resubmissions."""

    seen: set[str] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)
    current: str = ""  # the address the expansion is at (for per-destination log lines)
    forwards: dict[tuple[str, str, str | None], list[str]] = field(default_factory=dict)

    def been_here(self, key: str) -> bool:
        if key in self.seen:
            return True
        self.seen.add(key)
        return False

    def record(self, dsn: str, text: str, action: str = "") -> None:
        status = SENT if dsn[:1] == "2" else BOUNCED if dsn[:1] == "5" else DEFERRED
        self.outcomes.append(Outcome(status, dsn, text, action, self.current))


class Expander:
    """The recursion; ``targets`` performs mailbox, file, command and pass deliveries."""

    def __init__(self, agent: object) -> None:
        from mailcore.delivery.local.targets import Targets  # one agent, two halves

        assert isinstance(agent, Targets)
        self.t = agent
        self.s = agent.settings

    # --- recipient.c ----------------------------------------------------------------------
    async def recipient(self, run: Run, attr: Attr) -> None:
        previous, run.current = run.current, attr.address
        try:
            await self._recipient(run, attr)
        finally:
            run.current = previous

    async def _recipient(self, run: Run, attr: Attr) -> None:
        if attr.level > MAX_LEVEL:
            return run.record("5.4.6", "recipient nesting limit exceeded")
        if run.been_here(f"recipient {attr.level} {attr.address}"):
            return None
        if attr.address.lower() in self.t.message.delivered:
            return run.record("5.4.6", f"mail forwarding loop for {attr.address}")
        local, at, domain = attr.address.lower().rpartition("@")
        if not at:
            local, domain = attr.address.lower(), ""
        user, extension = local, ""
        delim = self.s.recipient_delimiter
        if delim:
            pos = next((i for i, c in enumerate(local) if c in delim), -1)
            if pos > 0:
                user, extension = local[:pos], local[pos + 1:]
                if "/" in extension:  # Postfix drops an extension with "/" in it
                    local, extension = user, ""
        if not user:
            return run.record("5.1.3", f'null username in "{attr.address}"')
        hostile = is_hostile_local(local) or is_hostile_local(user)
        if hostile:  # never a file name, command or include, whatever the tables say
            return run.record("5.1.1", f'unknown user: "{local}"')
        attr = replace(attr, local=local, user=user, extension=extension, domain=domain,
                       delivered=attr.delivered or attr.address, level=attr.level + 1)
        await self.switch(run, attr)

    async def switch(self, run: Run, attr: Attr) -> None:
        if await self.alias(run, attr, attr.local):
            return
        if attr.extension and await self.alias(run, attr, attr.user):
            return
        if attr.owner is not None and attr.owner.lower() != attr.user:
            return self.indirect(run, attr)
        if attr.exp_type == INCLUDE:
            return self.indirect(run, attr)
        if self.s.require_home_directory:
            user = await self.t.users.by_name(attr.user)
            if user is not None and not await self.t.home_exists(user):
                return run.record("4.3.0", f"cannot access home directory {user.home}")
        if await self.dotforward(run, attr):
            return
        if await self.t.mailbox(run, attr):
            return
        await self.unknown(run, attr)

    # --- alias.c --------------------------------------------------------------------------
    async def alias(self, run: Run, attr: Attr, name: str) -> bool:
        if attr.exp_from is not None and attr.exp_from.lower() == name:
            return False  # an alias that lists itself: deliver to the user
        for spec in self.s.alias_maps:
            table = self.t.tables.open(spec)
            try:
                value = await table.get(name)
            except Exception:
                run.record("4.3.0", "alias database unavailable")
                return True
            if value is None:
                continue
            if attr.level > MAX_LEVEL:
                run.record("5.4.6", f"alias database loop for {name}")
                return True
            await self._expand_alias(run, attr, name, spec, value)
            return True
        return False

    async def _expand_alias(self, run: Run, attr: Attr, name: str, spec: str,
                            value: str) -> None:
        rights = await self.t.table_owner(spec)
        owner, sender = None, attr.sender
        if self.s.owner_request_special:
            owner_name = f"owner-{name}"
            owner_rhs = await self._alias_value(owner_name)
            if owner_rhs is not None:
                target = owner_rhs if self.s.expand_owner_alias else owner_name
                sender = owner = self._canonical(target)
        notify = _without_success(attr.notify)
        delivered = attr.delivered if self.s.frozen_delivered_to else attr.address
        child = replace(attr, exp_type=ALIAS, exp_from=name, rights=rights, owner=owner,
                        sender=sender, notify=notify, delivered=delivered,
                        orig_rcpt=None if owner else attr.orig_rcpt)
        count = await self.tokens(run, child, parse_alias_values(value))
        if count < 1:
            run.record("4.3.0", "alias database unavailable")

    async def _alias_value(self, name: str) -> str | None:
        for spec in self.s.alias_maps:
            value = await self.t.tables.open(spec).get(name)
            if value is not None:
                return value
        return None

    def _canonical(self, address: str) -> str:
        first = split_values(address)[0] if split_values(address) else address
        return first if "@" in first else f"{first}@{self.s.myorigin}"

    # --- token.c --------------------------------------------------------------------------
    async def tokens(self, run: Run, attr: Attr, items: list[str]) -> int:
        count = 0
        for item in items:
            item = item.strip()
            if not item:
                continue
            count += 1
            await self.token(run, attr, item)
        return count

    async def token(self, run: Run, attr: Attr, item: str) -> None:
        if item.startswith("|"):
            return await self.t.command(run, attr, item[1:].strip())
        if item.startswith("/"):
            return await self.t.file(run, attr, item)
        if item.lower().startswith(":include:"):
            return await self.include(run, attr, item[len(":include:"):].strip())
        if item.startswith("\\"):  # \user: straight to the mailbox, no more expansion
            bare = replace(attr, address=self._canonical(_unquote(item[1:])))
            if not await self.t.mailbox(run, bare):
                await self.unknown(run, bare)
            return None
        await self.resolve(run, attr, self._canonical(_unquote(item.strip("<>"))))

    async def resolve(self, run: Run, attr: Attr, address: str) -> None:
        """deliver_resolve_addr: our own local domain recurses, anything else is forwarded."""
        child = replace(attr, address=address)
        if await self.t.is_local(address):
            await self.recipient(run, child)
        else:
            self.indirect(run, child)

    def indirect(self, run: Run, attr: Attr) -> None:
        """Queue ``attr.address`` for resubmission through cleanup (forward.c)."""
        key = (attr.sender, attr.delivered, attr.notify)
        addresses = run.forwards.setdefault(key, [])
        if attr.address not in addresses:
            addresses.append(attr.address)

    # --- include.c ------------------------------------------------------------------------
    async def include(self, run: Run, attr: Attr, path: str) -> None:
        if not path.startswith("/"):
            return run.record("5.3.5", f":include:{path} uses a relative path")
        if run.been_here(f"include {path}"):
            return None
        rights = attr.rights
        try:
            st, text = await self.t.read_as(rights, path)
        except OSError as exc:
            return run.record("5.3.5" if exc.errno == 2 else "4.3.0",
                              f"cannot open include file {path}: {exc.strerror}")
        if not stat.S_ISREG(st.st_mode):
            return run.record("5.3.5", f"include file {path} is not a regular file")
        owner, sender = attr.owner, attr.sender
        if st.st_uid != 0 and (rights is None or rights.uid == 0):
            rights = await self.t.users.by_uid(st.st_uid) or User(
                str(st.st_uid), st.st_uid, st.st_gid, "/")
        if owner is None and st.st_uid != 0:
            file_owner = await self.t.users.by_uid(st.st_uid)
            if file_owner is not None:
                owner = sender = file_owner.name
        child = replace(attr, exp_type=INCLUDE, exp_from=None, rights=rights, owner=owner,
                        sender=sender)
        await self.tokens(run, child, _stream_items(text))

    # --- dotforward.c ---------------------------------------------------------------------
    async def dotforward(self, run: Run, attr: Attr) -> bool:
        if not self.s.forward_path:
            return False
        user = await self.t.users.by_name(attr.user)
        if user is None:
            return False
        delivered = attr.delivered if self.s.frozen_delivered_to else attr.address
        attr = replace(attr, rights=user, exp_type=FORWARD, owner=attr.user,
                       delivered=delivered)
        names = self.t.expansion_names(attr, user)
        for entry in self.s.forward_path:
            path, undefined = local_expand(entry, names, self.s.forward_filter)
            if undefined or not path:
                continue
            try:
                st = await self.t.privileges.run(self.t.identity(user),
                                                 lambda p=path: os.lstat(p))
            except OSError:
                continue
            return await self._read_forward(run, attr, user, path, st)
        return False

    async def _read_forward(self, run: Run, attr: Attr, user: User, path: str,
                            st: os.stat_result) -> bool:
        if run.been_here(f"forward {path}"):
            return f"forward-done {path}" in run.seen
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid not in (0, user.uid) and self.t.privileges.root:
            problem = f"has bad owner uid {st.st_uid}"
        elif st.st_mode & 0o002:
            problem = "is world writable"
        if problem:
            self.t.warn(f"file {path} {problem}")
            return False
        try:
            _, text = await self.t.read_as(user, path)
        except OSError as exc:
            self.t.warn(f"cannot open file {path}: {exc.strerror}")
            return False
        attr = replace(attr, exp_from=attr.local, notify=_without_success(attr.notify))
        if await self.tokens(run, attr, _stream_items(text)) > 0:
            run.seen.add(f"forward-done {path}")
            return True
        return False

    # --- unknown.c ------------------------------------------------------------------------
    async def unknown(self, run: Run, attr: Attr) -> None:
        transport = await self.t.fallback_transport(attr)
        if transport:
            return await self.t.pass_to(run, attr, transport)
        if self.s.luser_relay:
            names = self.t.expansion_names(attr, None)
            relay, _ = local_expand(self.s.luser_relay, names, self.s.forward_filter)
            if relay:
                return await self.resolve(run, replace(attr, exp_type=""),
                                          self._canonical(relay))
        run.record("5.1.1", f'unknown user: "{attr.local}"')


def _without_success(notify: str | None) -> str | None:
    """DSN: SUCCESS is not propagated through an alias or a .forward file."""
    if notify is None:
        return None
    kept = [n for n in notify.split(",") if n and n != "SUCCESS"]
    return ",".join(kept) if kept else "NEVER"


def _unquote(item: str) -> str:
    local, at, domain = item.rpartition("@")
    if at and len(local) >= 2 and local[0] == local[-1] == '"':
        return local[1:-1].replace('\\"', '"') + "@" + domain
    return item


def _stream_items(text: str) -> list[str]:
    """Items of a .forward or :include: file: lines, comments, commas outside quotes."""
    items: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        items.extend(parse_alias_values(line))
    return items


def table_file(spec: str) -> str | None:
    """The file behind a file-based table spec (for the alias database owner)."""
    try:
        kind, name = split_table_spec(spec)
    except Exception:
        return None
    if kind == "proxy":
        return table_file(name)
    return name if name.startswith("/") else None
