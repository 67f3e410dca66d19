"""The arguments of MAIL FROM, RCPT TO and VRFY: the address and its ESMTP parameters.

Owns: turning the text after ``MAIL FROM:`` into a new ``Transaction`` (path plus SIZE,
BODY, SMTPUTF8, RET, ENVID), the text after ``RCPT TO:`` into an ``EnvelopeRecipient``
(path plus NOTIFY, ORCPT), and a VRFY argument into the address to echo; each refusal as
the ``Reply`` Postfix sends (501/555 with an enhanced status code).

Must not: check sequencing, limits or restrictions, log, or keep state (policy.py does);
every function is pure apart from the arrival time a new ``Transaction`` records.

Invariants: every address goes through mailcore.address; an ``AddressError`` never escapes
(it becomes its own reply); no reply contains exception text. Parameters read (through
``SmtpdSettings``): smtputf8_enable, strict_rfc821_envelopes.
"""

from __future__ import annotations

from mailcore.address import (
    AddressError,
    is_hostile_local,
    parse_mail_params,
    parse_orcpt,
    parse_path,
    split_path_and_params,
    xtext_decode,
)
from mailcore.model import EnvelopeRecipient
from mailcore.smtpd.settings import Reply, SmtpdSettings, reply
from mailcore.smtpd.state import Transaction

MAX_ENVID = 100  # RFC 3461 4.4
NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def parse_mail_from(text: str, settings: SmtpdSettings) -> Transaction | Reply:
    """The transaction MAIL starts, from the text after ``FROM:``, or the refusal."""
    try:
        path, params_text = split_path_and_params(text.lstrip(" "), for_sender=True)
        params = parse_mail_params(params_text)
        tx = Transaction(sender="")
        problem = _mail_params(params, tx, smtputf8_enable=settings.smtputf8)
        if problem is not None:
            return problem
        address = parse_path(path, allow_empty=True, smtputf8=tx.smtputf8,
                             for_sender=True, allow_bare_local=not settings.strict_rfc821,
                             allow_unbracketed=not settings.strict_rfc821)
    except AddressError as err:
        return Reply(err.code, (f"{err.status} {err.text}",))
    tx.sender = address.text if address is not None else ""
    return tx


def _mail_params(params: dict[str, str | None], tx: Transaction, *,
                 smtputf8_enable: bool) -> Reply | None:
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > 18:
                return reply(501, "5.5.4", "Bad message size syntax")
            tx.size = int(value)
        elif key == "BODY":
            body = (value or "").upper()
            if body not in ("7BIT", "8BITMIME"):
                return reply(501, "5.5.4", "Unsupported BODY parameter")
            tx.body = body
        elif key == "SMTPUTF8" and smtputf8_enable and value is None:
            tx.smtputf8 = True
        elif key == "RET":
            ret = (value or "").upper()
            if ret not in ("FULL", "HDRS"):
                return reply(501, "5.5.4", "Bad RET parameter syntax")
            tx.ret = ret
        elif key == "ENVID":
            envid = xtext_decode(value or "")
            if not envid or len(envid) > MAX_ENVID or not all(
                    " " <= c <= "~" for c in envid):
                return reply(501, "5.5.4", "Bad ENVID parameter syntax")
            tx.envid = envid
        else:
            return reply(555, "5.5.4", f"Unsupported option: {key}")
    return None


def parse_rcpt_to(text: str, settings: SmtpdSettings, *,
                  smtputf8: bool) -> EnvelopeRecipient | Reply:
    """The recipient from the text after ``TO:`` (``smtputf8``: the transaction's MAIL
    asked for SMTPUTF8), or the refusal."""
    try:
        path, params_text = split_path_and_params(text.lstrip(" "))
        notify, orcpt, problem = _rcpt_params(parse_mail_params(params_text))
        if problem is not None:
            return problem
        address = parse_path(path, allow_empty=False, smtputf8=smtputf8,
                             allow_bare_postmaster=True,
                             allow_bare_local=not settings.strict_rfc821,
                             allow_unbracketed=not settings.strict_rfc821)
    except AddressError as err:
        return Reply(err.code, (f"{err.status} {err.text}",))
    assert address is not None
    if is_hostile_local(address.local):
        return reply(501, "5.1.3", "Bad recipient address syntax")
    original = path[1:-1] if path.startswith("<") else path
    return EnvelopeRecipient(address.text, original, notify, orcpt)


def _rcpt_params(params: dict[str, str | None]
                 ) -> tuple[str | None, str | None, Reply | None]:
    notify = orcpt = None
    for key, value in params.items():
        if key == "NOTIFY":
            words = (value or "").upper().split(",")
            if not (words == ["NEVER"] or (words and set(words) <= NOTIFY_WORDS
                                           and len(set(words)) == len(words))):
                return None, None, reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
            notify = ",".join(words)
        elif key == "ORCPT":
            addr_type, decoded = parse_orcpt(value or "")
            orcpt = f"{addr_type};{decoded}"
        else:
            return None, None, reply(555, "5.5.4", f"Unsupported option: {key}")
    return notify, orcpt, None


def parse_vrfy(arg: str, settings: SmtpdSettings) -> str | Reply:
    """The address VRFY names (brackets optional), or the refusal."""
    text = arg.strip()
    if not text:
        return reply(501, "5.5.4", "Syntax: VRFY address")
    try:
        path = text if text.startswith("<") else f"<{text}>"
        address = parse_path(path, allow_empty=False, smtputf8=settings.smtputf8,
                             allow_bare_local=True)
    except AddressError as err:
        return Reply(err.code, (f"{err.status} {err.text}",))
    assert address is not None
    return address.text
