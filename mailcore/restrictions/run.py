"""One evaluation of restriction lists: Postfix's generic_checks and its per-call state.

Owns: walking a restriction list left to right (warn_if_reject, the discard short-cut, the
recursion limit of nested lists and classes), smtpd_check_reject's rules (warn_if_reject
turns a refusal into a logged ``reject_warning``; a remembered defer_if_reject turns a 5xx
into that 4xx; soft_bounce), defer_if_permit / defer_if_reject bookkeeping, and the side
effects access tables request (HOLD, DISCARD, REDIRECT, FILTER, PREPEND) with their log
events.

Must not: know what an individual restriction does (builtins.py), speak SMTP, or keep state
beyond one ``check`` call (the caller carries ``Deferral`` values between stages).

Invariants: a restriction returns DUNNO, OK or REJECTED; REJECTED always leaves ``reply``
set; ``Abort`` (Postfix's longjmp) ends the whole stage with the status it carries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailcore.errors import TableError
from mailcore.restrictions.replies import finish_reply
from mailcore.restrictions.types import Deferral, Event, Facts

if TYPE_CHECKING:
    from mailcore.restrictions.core import Resources

DUNNO, OK, REJECTED = 0, 1, 2
MAX_RECURSION = 100
CONFIG_ERROR = (451, "4.3.5", "Server configuration error")


@dataclass(frozen=True)
class Step:
    """One parsed restriction: its name (lower-case) and its argument, if it takes one."""

    name: str
    arg: str | None = None


@dataclass(frozen=True)
class Scope:
    """What a list is about: Postfix's reply_name, reply_class and default access check."""

    name: str
    cls: str
    default_access: str | None


class Abort(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


Builtin = Callable[["Run", Scope, "str | None"], Awaitable[int]]


class Run:
    """The state of one ``Restrictions.check`` call."""

    def __init__(self, res: Resources, facts: Facts):
        self.res = res
        self.facts = facts
        self.recursion = 0
        self.warn_if_reject = 0
        self.defer_if_permit: Deferral | None = None
        self.defer_if_reject: Deferral | None = None
        self.discard = facts.discard
        self.reply: tuple[int, str, str] | None = None
        self.events: list[Event] = []
        self.hold = False
        self.redirect: str | None = None
        self.filter: str | None = None
        self.prepend: list[str] = []
        self.recipient_maps_checked = False
        self.sender_maps_checked = False
        self.recipient = facts.recipient  # hidden at DATA with several recipients
        # defer_if_permit as each stage left it (earlier stages' from the session)
        self.client_deferral = self.helo_deferral = self.sender_deferral = \
            facts.prior_deferral

    # --- replies ------------------------------------------------------------------------
    def reject(self, code: int, dsn: str, text: str, *, software: bool = False) -> int:
        """smtpd_check_reject: REJECTED, or DUNNO when only warning."""
        warn = self.warn_if_reject > 0 and not software
        (code, dsn, text), warning = finish_reply(code, dsn, text, soft_bounce=False)
        if warning:
            self.warning(warning)
        pending = self.defer_if_reject
        if not warn and pending is not None and code >= 500:
            self.warn_if_reject, self.defer_if_reject = 0, None
            return self.reject(pending.code, pending.dsn, pending.text)
        (code, dsn, text), _ = finish_reply(code, dsn, text,
                                            soft_bounce=self.res.settings.soft_bounce)
        if warn:
            self.events.append(Event("reject_warning", f"{code} {dsn} {text}"))
            return DUNNO
        self.reply = (code, dsn, text)
        return REJECTED

    def abort_config(self, why: str) -> None:
        self.warning(why)
        raise Abort(self.reject(*CONFIG_ERROR, software=True))

    def lookup_failed(self, name: str) -> None:
        """reject_dict_retry: a table could not answer; the client should try again."""
        raise Abort(self.reject(451, "4.3.0", f"<{name}>: Temporary lookup failure"))

    def defer_if_permit_(self, code: int, dsn: str, text: str) -> None:
        if self.warn_if_reject:
            self.reject(code, dsn, text)
        elif self.defer_if_permit is None:
            self.defer_if_permit = Deferral(code, dsn, text)

    def defer_if_reject_(self, code: int, dsn: str, text: str) -> None:
        if self.defer_if_reject is None:
            self.defer_if_reject = Deferral(code, dsn, text)

    def reject_deferral(self) -> int:
        pending = self.defer_if_permit
        assert pending is not None
        return self.reject(pending.code, pending.dsn, pending.text)

    def warning(self, text: str) -> None:
        self.events.append(Event("warning", text))

    def event(self, whatsup: str, text: str) -> None:
        self.events.append(Event(whatsup, text))

    def reset(self) -> None:
        """SMTPD_CHECK_RESET between lists."""
        self.recursion = 0
        self.warn_if_reject = 0
        self.defer_if_reject = None

    # --- walking a list -----------------------------------------------------------------
    async def generic(self, steps: Sequence[Step], scope: Scope) -> int:
        saved = self.recursion
        self.recursion += 1
        status = DUNNO
        try:
            for step in steps:
                if self.discard:
                    break
                if step.name == "warn_if_reject":
                    if self.warn_if_reject == 0:
                        self.warn_if_reject = self.recursion
                    continue
                status = await self._apply(step, scope)
                if self.warn_if_reject >= self.recursion:
                    self.warn_if_reject = 0
                if status != DUNNO:
                    break
                if self.defer_if_permit is not None and self.defer_if_reject is not None:
                    break
        finally:
            self.recursion = saved
        return status

    async def _apply(self, step: Step, scope: Scope) -> int:
        if step.name == "table":  # a bare type:table means the list's default check
            if scope.default_access is None:
                self.abort_config(f"specify one of (check_client_access, check_helo_access, "
                                  f"check_sender_access, check_recipient_access) before "
                                  f"{scope.cls} restriction \"{step.arg}\"")
            step = Step(scope.default_access or "", step.arg)
        builtin = self.res.builtins.get(step.name)
        try:
            if builtin is not None:
                return await builtin(self, scope, step.arg)
            nested = self.res.classes.get(step.name)
            if nested is None:
                self.abort_config(f"unknown smtpd restriction: \"{step.name}\"")
                return DUNNO
            if self.recursion > MAX_RECURSION:
                self.abort_config(f"restriction class {step.name} causes unreasonable "
                                  "recursion")
            return await self.generic(nested, scope)
        except TableError as exc:
            self.warning(str(exc))
            self.lookup_failed(scope.name)
            return DUNNO

    async def guarded(self, steps: Sequence[Step], scope: Scope) -> int:
        """One stage's list with its longjmp target."""
        try:
            return await self.generic(steps, scope)
        except Abort as abort:
            return abort.status
