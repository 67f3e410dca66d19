"""What the restrictions need to know about an address or host name.

Owns: ``resolve`` — the recipient as trivial-rewrite's resolver sees it (local-context
rewrite, routing inside local domains stripped, lower-cased), its address class and whether
routing operators survive in its local part (Postfix's RESOLVE_FLAG_ROUTED); and Postfix's
host name / host address syntax rules (valid_hostname, valid_hostaddr, the trailing-dot
truncation smtpd applies before checking).

Must not: refuse anything or do DNS.

Invariants: ``Resolved.address`` is the internal (unquoted) form, lower-case, always with a
domain; ``routed`` is computed on that internal form so ``"u@x"@relay`` and ``u%x@relay``
count as routed whatever swap_bangpath and allow_percent_hack say, as in Postfix.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.rewrite import Rewriter
from mailcore.rewrite.forms import internal

FINAL_CLASSES = frozenset({AddressClass.LOCAL, AddressClass.VIRTUAL_ALIAS,
                           AddressClass.VIRTUAL_MAILBOX})
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
MAX_HOSTNAME = 255
MAX_LABEL = 63


@dataclass(frozen=True)
class Resolved:
    address: str  # internal form, lower-case: user@domain
    domain: str
    address_class: AddressClass
    routed: bool

    @property
    def final(self) -> bool:
        return self.address_class in FINAL_CLASSES

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]


async def resolve(rewriter: Rewriter, classifier: DomainClassifier, address: str) -> Resolved:
    """trivial-rewrite's rewrite (local context) and resolve of one address."""
    completed = rewriter.complete(address, "local") if address else address
    unrouted = await rewriter.unroute(completed)
    flat = internal(unrouted).lower()
    domain = flat.rpartition("@")[2]
    first = min((i for i in (flat.find(op) for op in "@!%") if i >= 0), default=-1)
    routed = first >= 0 and flat[first + 1:] != domain
    return Resolved(flat, domain, await classifier.classify(domain), routed)


def truncate_dot(name: str) -> str:
    """Drop one trailing dot (but not from "..."), as smtpd does before checking a name."""
    if len(name) > 1 and name.endswith(".") and name[-2] != ".":
        return name[:-1]
    return name


def valid_hostname(name: str) -> bool:
    """Postfix's valid_hostname: LDH labels (underscore tolerated), not all-numeric."""
    if not name or len(name) > MAX_HOSTNAME:
        return False
    labels = name.split(".")
    if any(len(label) > MAX_LABEL or not _LABEL.match(label) for label in labels):
        return False
    return not all(label.isdigit() for label in labels)


def valid_hostaddr(text: str) -> bool:
    if ":" not in text and not text[:1].isdigit():
        return False  # neither IPv6 (has a colon) nor IPv4 (starts with a digit): no parse
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def valid_mailhost_addr(literal: str) -> bool:
    """The inside of ``[...]``: an IPv4 address or ``IPv6:`` followed by an IPv6 address."""
    if literal[:5].lower() == "ipv6:":
        return ":" in literal[5:] and valid_hostaddr(literal[5:])
    return "." in literal and ":" not in literal and valid_hostaddr(literal)


def domain_part(address: str) -> str:
    at = address.rfind("@")
    return address[at + 1:] if at >= 0 else ""
