"""Address rewriting: Postfix's cleanup rewriting and trivial-rewrite's "rewrite" service.

Owns: everything that changes an address between arrival and the queue — completion of
incomplete addresses, canonical maps, masquerading, virtual alias expansion, automatic BCC,
duplicate elimination, header address rewriting — and relocated_maps lookups. The resolver
(address class → transport, nexthop) is ``resolve.py`` (AddressResolver), built on
``Rewriter.unroute``.
Must not: touch the queue or speak SMTP; only resolve.py picks transports and nexthops.

Parts: forms.py (pure address strings), settings.py (parameters, Step), core.py (Rewriter),
expand.py (recipients after canonical), headers.py (header addresses and their context).
"""

from mailcore.rewrite.core import Found, Rewriter
from mailcore.rewrite.expand import EXPANSION_ERROR, ExpandResult, RecipientFailure
from mailcore.rewrite.headers import header_class, header_rewrite_context
from mailcore.rewrite.resolve import AddressResolver, NextHop, Resolution, parse_nexthop
from mailcore.rewrite.settings import RewriteSettings, Step

__all__ = [
    "EXPANSION_ERROR",
    "AddressResolver",
    "ExpandResult",
    "Found",
    "NextHop",
    "RecipientFailure",
    "Resolution",
    "RewriteSettings",
    "Rewriter",
    "Step",
    "header_class",
    "header_rewrite_context",
    "parse_nexthop",
]
