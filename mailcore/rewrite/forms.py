"""Address forms for rewriting: splitting, quoting, trivial-rewrite's "rewrite" rule set.

Owns: pure string functions over addresses in external (RFC 5322 quoted) form, the form
that smtpd queues and that Postfix uses for table lookups: where the domain starts, the
internal (unquoted) local part, recipient_delimiter extensions, the keys of Postfix's address
search (mail_addr_find), parsing a table result into addresses (mail_addr_crunch), and the
context-dependent completion of incomplete addresses (trivial-rewrite's rewrite_tree).
Must not: look anything up or read the configuration; callers pass every setting.
Invariants: no function raises on odd input (header addresses can be anything); an address
that needs no change comes back as the identical string.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.address import AddressError, quote_local
from mailcore.tables.search import split_extension


@dataclass(frozen=True)
class Completion:
    """What trivial-rewrite appends in one context (local: myorigin/mydomain; remote: the
    remote_header_rewrite_domain for both), and which operators it honours."""

    origin: str
    domain: str
    append_at_origin: bool
    append_dot_domain: bool
    swap_bangpath: bool
    percent_hack: bool


def _unquoted_positions(text: str) -> list[int]:
    """Indexes of characters outside quoted strings and quoted pairs."""
    out: list[int] = []
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted:
            out.append(i)
    return out


def find_unquoted(text: str, op: str, *, last: bool) -> int:
    if '"' not in text and "\\" not in text:  # the usual address: nothing is quoted
        return text.rfind(op) if last else text.find(op)
    hits = [i for i in _unquoted_positions(text) if text[i] == op]
    if not hits:
        return -1
    return hits[-1] if last else hits[0]


def split_address(address: str) -> tuple[str, str | None]:
    """(local part as written, domain) at the last ``@`` outside quotes; domain None if none."""
    at = find_unquoted(address, "@", last=True)
    if at < 0:
        return address, None
    return address[:at], address[at + 1 :]


def join_address(local: str, domain: str | None) -> str:
    return local if domain is None else f"{local}@{domain}"


def unquote_local(local: str) -> str:
    """The internal form of an external local part: quotes and quoted-pair backslashes go."""
    out: list[str] = []
    quoted = escaped = False
    for ch in local:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
    return "".join(out)


def quote_internal(local: str) -> str:
    """External form of an internal local part (quoted only when it must be)."""
    if not local:
        return local
    try:
        return quote_local(local)
    except AddressError:
        return local  # a control character: leave it for the grammar checks to refuse


def internal(address: str) -> str:
    local, domain = split_address(address)
    return join_address(unquote_local(local), domain)


def external(address_internal: str) -> str:
    """Quote the local part of an internal ``local@domain`` (split at the last ``@``)."""
    local, at, domain = address_internal.rpartition("@")
    if not at:
        return quote_internal(address_internal)
    return f"{quote_internal(local)}@{domain}"


def address_keys(
    address: str, delimiter: str, *, local_domain: bool
) -> list[tuple[str, str | None]]:
    """mail_addr_find's keys, each with the extension it leaves unmatched (or None).

    user+ext@domain, user@domain, then for a local domain (or $myorigin) user+ext and user,
    then @domain. Extensions are split in the internal form so a quoted local part keeps its
    quotes in every key. Only the first key is a full key (pattern tables see only it).
    """
    local, domain = split_address(address)
    plain = unquote_local(local)
    split = split_extension(plain, delimiter)
    bare = quote_internal(split[0]) if split else None
    ext = split[1] if split else None
    keys: list[tuple[str, str | None]] = [(address, None)]
    if bare is not None:
        keys.append((join_address(bare, domain), ext))
    if domain is not None:
        if local_domain:
            keys.append((local, None))
            if bare is not None:
                keys.append((bare, ext))
        keys.append(("@" + domain, None))
    return keys


def add_extension(address: str, extension: str) -> str:
    """Insert an unmatched extension (delimiter included) before the domain."""
    local, domain = split_address(address)
    return join_address(quote_internal(unquote_local(local) + extension), domain)


def _split_list(text: str) -> list[str]:
    """Items of a table result: commas (and, leniently, white space) outside quotes/<>/()."""
    items: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    angle = paren = 0
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "(":
            paren += 1
        elif ch == ")":
            paren = max(0, paren - 1)
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and not angle and not paren:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def result_addresses(value: str) -> list[str]:
    """The addresses in a canonical/virtual/bcc table result (mail_addr_crunch's parse).

    ``a, b``, ``a b``, ``"x y"@d`` and ``Name <a>`` are accepted; comments are dropped.
    """
    out: list[str] = []
    for item in _split_list(value):
        start, end = item.find("<"), item.rfind(">")
        if 0 <= start < end:
            out.append(item[start + 1 : end].strip())
            continue
        text = drop_comments(item)
        out.extend(split_words(text))
    return [a for a in out if a]


def drop_comments(text: str) -> str:
    out: list[str] = []
    depth = 0
    quoted = False
    for ch in text:
        if not depth and ch == '"':
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
            continue
        if not quoted and depth and ch == ")":
            depth -= 1
            continue
        if not depth:
            out.append(ch)
    return "".join(out)


def split_words(text: str) -> list[str]:
    spaces = [i for i in _unquoted_positions(text) if text[i].isspace()]
    words: list[str] = []
    prev = 0
    for i in [*spaces, len(text)]:
        if text[prev:i].strip():
            words.append(text[prev:i].strip())
        prev = i + 1
    return words


def rewrite_tree(address: str, ctx: Completion) -> tuple[str, tuple[str, ...]]:
    """trivial-rewrite's "rewrite" rule set; returns (result, names of the rules applied).

    Source routes are stripped; a domain-less address gets bangpath swapping, else the
    percent hack (``user%domain``), else ``@origin``; a dot-less domain gets ``.domain``;
    one trailing dot is removed. ``user%domain@host`` is left alone here: stripping routing
    inside a local domain is the resolver's job (see Rewriter.unroute).
    """
    applied: list[str] = []
    if address in ("", '""'):
        return address, ()
    if address == "@":
        return "", ("empty address",)
    if address.startswith("@"):
        colon = find_unquoted(address, ":", last=False)
        if 0 < colon < len(address) - 1:
            address = address[colon + 1 :]
            applied.append("source route stripped")
    if find_unquoted(address, "@", last=True) < 0:
        bang = find_unquoted(address, "!", last=False)
        percent = find_unquoted(address, "%", last=True)
        if ctx.swap_bangpath and bang >= 0:
            address = f"{address[bang + 1:]}@{address[:bang]}"
            applied.append("swap_bangpath")
        elif ctx.percent_hack and percent >= 0:
            address = f"{address[:percent]}@{address[percent + 1:]}"
            applied.append("allow_percent_hack")
        elif ctx.append_at_origin and ctx.origin:
            address = f"{address}@{ctx.origin}"
            applied.append("append_at_myorigin")
    _, domain = split_address(address)
    if (ctx.append_dot_domain and ctx.domain and domain and not domain.startswith("[")
            and "." not in domain):
        address = f"{address}.{ctx.domain}"
        applied.append("append_dot_mydomain")
    if address.endswith(".") and len(address) > 1 and address[-2] not in ".@":
        address = address[:-1]
        applied.append("trailing dot stripped")
    return address, tuple(applied)


def masquerade(address: str, domains: tuple[str, ...]) -> str:
    """masquerade_domains: the first list entry that is the domain or a parent decides;
    ``!name`` means "leave it", an exact match means "already masqueraded"."""
    local, domain = split_address(address)
    if not domain:
        return address
    low = domain.lower()
    for entry in domains:
        truncate = True
        while entry.startswith("!"):
            truncate, entry = not truncate, entry[1:]
        masq = entry.lower()
        if not masq:
            continue
        if masq == low:
            return address
        if low.endswith("." + masq):
            return f"{local}@{masq}" if truncate else address
    return address
