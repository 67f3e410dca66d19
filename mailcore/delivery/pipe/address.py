"""pipe(8) address forms: the internal (unquoted) form, RFC 822 local-part quoting and the
u/h case folding, as Postfix's pipe applies them to macro values and prepended headers.

Owns: turning the quoted addresses mailcore stores into the forms pipe(8) hands the command.
Must not: parse full RFC 5322 addresses or look anything up; these are text transformations.
Invariants: only the local part (left of the last ``@``) is ever unquoted or quoted; 8-bit
characters pass unchanged.
Parameters: none.
"""

from __future__ import annotations

MAILER_DAEMON = "MAILER-DAEMON"


def internal_form(address: str) -> str:
    """Postfix's internal (unquoted) form of an address mailcore stores quoted.

    Quotes and backslashes are removed from the local part only; the text after the last
    unquoted ``@`` is kept as it is.
    """
    out: list[str] = []
    at: int | None = None
    quoted, index = False, 0
    while index < len(address):
        char = address[index]
        index += 1
        if char == '"':
            quoted = not quoted
            continue
        if char == "\\" and index < len(address):
            char, index = address[index], index + 1
        elif char == "@" and not quoted:
            at = index - 1
            out.append(char)
            break
        out.append(char)
    if at is None:
        return "".join(out)
    return "".join(out) + address[index:]


_RFC822_SPECIALS = frozenset('()<>@,;:\\"[]')


def _is_dot_string(local: str) -> bool:
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return not any(c == " " or c in _RFC822_SPECIALS or ord(c) < 32 or ord(c) == 127
                   for c in local)


def quote_822_local(address: str) -> str:
    """Quote the local part (left of the last ``@``) of an internal-form address when it is
    not an RFC 822 dot-string; 8-bit characters pass unchanged."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if _is_dot_string(local):
        return address
    escaped = "".join("\\" + c if c in '"\\\r' else c for c in local)
    return f'"{escaped}"' + (f"@{domain}" if at else "")


def fold_address(address: str, *, user: bool, host: bool) -> str:
    """Flags u and h: lower-case the part left and/or right of the last ``@``."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower() if user else address
    return f"{local.lower() if user else local}@{domain.lower() if host else domain}"
