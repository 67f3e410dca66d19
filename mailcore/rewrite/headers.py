"""Header address rewriting: which headers carry addresses, where the addresses are, and
whose headers get rewritten (local_header_rewrite_clients, remote_header_rewrite_domain).

Owns: Postfix's header classes (header_opts: sender headers vs recipient headers), a
span-preserving scanner for RFC 5322 address lists (display names, comments, groups and
folding stay byte for byte; only the addr-spec text is replaced), and the decision of the
header rewrite context for a client.
Must not: touch the body, decode encoded-words, or reorder or re-fold a header.
Invariants: a header with nothing to rewrite comes back as the identical string; in the
remote context with an empty remote_header_rewrite_domain nothing is rewritten at all.
Parameters: local_header_rewrite_clients, mynetworks, remote_header_rewrite_domain.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from mailcore.addrclass import DomainClassifier
from mailcore.config import Config
from mailcore.model import ClientInfo
from mailcore.rewrite.forms import drop_comments, split_words
from mailcore.rewrite.settings import Step
from mailcore.tables import SUPPORTED_TYPES, AddressList, TableSet, split_table_spec

if TYPE_CHECKING:
    from mailcore.rewrite.core import Rewriter

# Postfix's header_opts table: HDR_OPT_SENDER headers and HDR_OPT_RECIP headers.
SENDER_HEADERS = frozenset({
    "disposition-notification-to", "errors-to", "from", "mail-followup-to", "reply-to",
    "resent-from", "resent-sender", "return-path", "return-receipt-to", "sender",
})
RECIPIENT_HEADERS = frozenset({
    "apparently-to", "bcc", "cc", "resent-bcc", "resent-cc", "resent-reply-to", "resent-to",
    "to",
})


def header_class(name: str) -> str | None:
    low = name.strip().lower()
    if low in SENDER_HEADERS:
        return "header_sender"
    if low in RECIPIENT_HEADERS:
        return "header_recipient"
    return None


def _bare_address(value: str, start: int, end: int) -> tuple[int, int, str] | None:
    """The addr-spec of a mailbox written without <>: from its first to its last token."""
    text = value[start:end]
    body = drop_comments(text)
    words = split_words(body)
    if not words:
        return None
    for before, after in itertools.pairwise(words):
        if not (before[-1] in "@." or after[0] in "@."):
            return None  # a phrase without an address ("Joe Smith"): leave it alone
    first = start + text.find(words[0][0])
    last = start + _last_token_end(text)
    if first >= last:
        return None
    return first, last, "".join(words)


def _last_token_end(text: str) -> int:
    """End of the last character that is neither white space nor inside a trailing comment."""
    end = len(text)
    while end > 0:
        stripped = text[:end].rstrip()
        if stripped.endswith(")"):
            depth, i = 0, len(stripped) - 1
            while i >= 0:
                depth += {")": 1, "(": -1}.get(stripped[i], 0)
                if depth == 0:
                    break
                i -= 1
            end = max(i, 0)
            continue
        return len(stripped)
    return 0


def address_spans(value: str) -> list[tuple[int, int, str]]:
    """(start, end, addr-spec) for every mailbox of an address-list header value."""
    spans: list[tuple[int, int, str]] = []
    start, angle_open, angle = 0, -1, None
    quoted = escaped = False
    depth = 0

    def finish(end: int) -> None:
        if angle is not None:
            a, b = angle
            inner = value[a:b]
            lead = len(inner) - len(inner.lstrip())
            spans.append((a + lead, a + len(inner.rstrip()), inner.strip()))
        else:
            found = _bare_address(value, start, end)
            if found:
                spans.append(found)

    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif angle_open >= 0:
            if ch == ">":
                angle = angle or (angle_open + 1, i)
                angle_open = -1
        elif ch == "<":
            angle_open = i
        elif ch == ":" and angle is None:
            start = i + 1  # a group's display name
        elif ch in ",;":
            finish(i)
            start, angle = i + 1, None
    finish(len(value))
    return spans


async def rewrite_header(rw: Rewriter, name: str, value: str, *, context: str) -> str:
    cls = header_class(name)
    if cls is None:
        return value
    if context == "remote" and rw.settings.remote is None:
        rw.trace.add(Step("header", f"{name}: {value}", (value,),
                          note="remote client and empty remote_header_rewrite_domain"))
        return value
    out = value
    for start, end, address in reversed(address_spans(value)):
        if not address:
            continue  # <> stays
        new = rw.complete(address, context)
        new = await rw.mappings(new, cls)
        if new != address:
            out = out[:start] + new + out[end:]
    return out


async def header_rewrite_context(config: Config, tables: TableSet,
                                 classifier: DomainClassifier, client: ClientInfo, *,
                                 local_submission: bool = False) -> str | None:
    """"local" for sendmail/pickup mail and clients in local_header_rewrite_clients,
    "remote" when remote_header_rewrite_domain is set, else None (leave headers alone).

    Items: permit_inet_interfaces, permit_mynetworks, permit_sasl_authenticated,
    check_address_map type:table and bare type:table (``static:all``); the TLS
    client-certificate items never match here (ClientInfo carries no certificate).
    """
    if local_submission or await _is_local_client(config, tables, classifier, client):
        return "local"
    return "remote" if config.get("remote_header_rewrite_domain").strip() else None


async def _is_local_client(config: Config, tables: TableSet, classifier: DomainClassifier,
                           client: ClientInfo) -> bool:
    items = list(config.get_list("local_header_rewrite_clients"))
    addr = client.address
    while items:
        item = items.pop(0)
        low = item.lower()
        if low == "check_address_map" and items:
            item = items.pop(0)
            low = item.lower()
        if low == "permit_inet_interfaces":
            literal = f"[IPv6:{addr}]" if ":" in addr else f"[{addr}]"
            hit = bool(addr) and await classifier.is_local(literal)
        elif low == "permit_mynetworks":
            nets = AddressList(config.get_list("mynetworks"), tables, match_subdomains=True)
            hit = bool(addr) and await nets.matches(addr)
        elif low == "permit_sasl_authenticated":
            hit = bool(client.sasl_user)
        elif ":" in item and split_table_spec(item)[0] in SUPPORTED_TYPES:
            hit = bool(addr) and await tables.open(item).get(addr) is not None
        else:
            hit = False
        if hit:
            return True
    return False
