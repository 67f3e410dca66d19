"""Envelope address syntax: RFC 5321 paths, RFC 6531 SMTPUTF8, IDNA, xtext, extensions.

Owns: turning the text of a MAIL FROM / RCPT TO path, an ESMTP parameter list, a sendmail
command-line address or an ORCPT value into typed values, and the reverse (quoting).
Parts: errors.py (AddressError, replies), local.py (Address, characters, local parts, local-part
policy), idna.py (domains, IDNA, address literals), path.py (the RFC 5321 path grammar),
params.py (ESMTP parameters, xtext, ORCPT). This module only re-exports their public names.
Must not: do I/O, look anything up, or decide routing (percent hack, bang paths and source
routes are kept as received; rewrite.py and restrictions.py own their policy).

Invariants of every ``Address`` this package returns:
- ``local`` is the decoded local part (no quotes, no quoted-pairs), never empty, free of
  control characters (C0, DEL, C1) and surrogates;
- ``domain`` is "" (bare local part), a lower-case ASCII domain whose labels are LDH or
  validated A-labels (U-labels are converted), without a trailing dot, or an address
  literal in canonical form ("[192.0.2.1]", "[IPv6:2001:db8::1]");
- ``Address.text`` parses back to an equal Address.

Reads no main.cf parameter itself: the caller passes strict_rfc821_envelopes-like choices
(allow_bare_local, allow_unbracketed) and recipient_delimiter.
"""

from mailcore.address.errors import (
    NEED_SMTPUTF8,
    ORCPT_SYNTAX,
    PARAM_SYNTAX,
    SYNTAX_RCPT,
    SYNTAX_SENDER,
    AddressError,
)
from mailcore.address.idna import MAX_DOMAIN, MAX_LABEL, domain_to_ascii
from mailcore.address.local import (
    ATEXT_SPECIALS,
    MAX_LOCAL,
    Address,
    is_hostile_local,
    quote_local,
    split_extension,
)
from mailcore.address.params import parse_mail_params, parse_orcpt, xtext_decode, xtext_encode
from mailcore.address.path import MAX_PATH, parse_address, parse_path, split_path_and_params

__all__ = [
    "ATEXT_SPECIALS",
    "MAX_DOMAIN",
    "MAX_LABEL",
    "MAX_LOCAL",
    "MAX_PATH",
    "NEED_SMTPUTF8",
    "ORCPT_SYNTAX",
    "PARAM_SYNTAX",
    "SYNTAX_RCPT",
    "SYNTAX_SENDER",
    "Address",
    "AddressError",
    "domain_to_ascii",
    "is_hostile_local",
    "parse_address",
    "parse_mail_params",
    "parse_orcpt",
    "parse_path",
    "quote_local",
    "split_extension",
    "split_path_and_params",
    "xtext_decode",
    "xtext_encode",
]
