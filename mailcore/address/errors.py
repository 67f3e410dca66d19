"""Address errors: the refusal type every address parser raises and the SMTP replies it carries.

Owns: ``AddressError`` (the public refusal), the internal ``_Bad`` signal that parsers raise
before they know which reply applies, and the Postfix reply triples.
Must not: parse anything or depend on the other address modules (they all depend on this one).

Invariants: every ``AddressError`` carries one of the reply triples below; ``_Bad`` never leaves
the package (each public entry point turns it into ``AddressError`` with ``_public``).

Reads no main.cf parameter.
"""

from __future__ import annotations

SYNTAX_RCPT = (501, "5.1.3", "Bad recipient address syntax")
SYNTAX_SENDER = (501, "5.1.7", "Bad sender address syntax")
NEED_SMTPUTF8 = (553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
PARAM_SYNTAX = (501, "5.5.4", "Syntax error in parameters or arguments")
ORCPT_SYNTAX = (501, "5.5.4", "Bad ORCPT parameter syntax")


class AddressError(ValueError):
    """An address or parameter was refused.

    ``code``/``status``/``text`` form the SMTP reply the client sees (Postfix's wording);
    ``detail`` says exactly what was wrong, for the log and for sendmail's stderr.
    """

    def __init__(self, detail: str, reply: tuple[int, str, str] = SYNTAX_RCPT):
        super().__init__(detail)
        self.detail = detail
        self.code, self.status, self.text = reply

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def utf8_required(self) -> bool:
        return (self.code, self.status, self.text) == NEED_SMTPUTF8

    def __str__(self) -> str:
        return self.detail


class _Bad(Exception):
    """Internal: a syntax problem, turned into AddressError with the caller's reply."""

    def __init__(self, detail: str, *, utf8: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.utf8 = utf8


def _public(err: _Bad, for_sender: bool) -> AddressError:
    if err.utf8:
        return AddressError(err.detail, NEED_SMTPUTF8)
    return AddressError(err.detail, SYNTAX_SENDER if for_sender else SYNTAX_RCPT)

