"""lmtp: delivery over LMTP (RFC 2033) to a message store such as Dovecot, as Postfix's lmtp(8).

Owns: the next-hop forms ``unix:/path``, ``inet:host:port``, ``host:port``, ``[addr]:port``
and ``host`` (port lmtp_tcp_port); the LMTP dialogue — greeting, LHLO, PIPELINING when
offered, MAIL FROM with SIZE, BODY=8BITMIME, SMTPUTF8 and DSN RET/ENVID, one RCPT per
recipient with DSN NOTIFY/ORCPT, DATA, the content streamed dot-stuffed, then one reply per
accepted recipient — and settling every recipient on its own with Postfix's wording
("host X said: … (in reply to end of DATA command)").

Must not: change queue state, log delivery results, retry (the scheduler does all three), use
the system resolver (host names go through mailcore.dns), or hold the message in memory.

Invariants: every recipient of a request gets exactly one result unless the agent itself
crashes; a broken or timed-out conversation defers the recipients not yet settled (4.4.2),
never bounces them; a reply is a success only with a 2xx code; a failure reply that is not
4xx/5xx is a protocol error (5.5.0), as Postfix; classification is mailcore.status.classify.

Parts: settings.py (main.cf parameters), proto.py (next hops, peer names, commands and
reply wording, all plain functions), agent.py (the LmtpAgent and one request's
conversation). This module re-exports their public names.

main.cf: lmtp_lhlo_name, lmtp_tcp_port, lmtp_connect_timeout, lmtp_lhlo_timeout,
lmtp_mail_timeout, lmtp_rcpt_timeout, lmtp_data_init_timeout, lmtp_data_xfer_timeout,
lmtp_data_done_timeout, lmtp_quit_timeout, lmtp_skip_5xx_greeting, lmtp_assume_final,
lmtp_line_length_limit, myhostname, queue_directory (relative unix: paths), and
dns_nameservers/dns_timeout through mailcore.dns for host names.
"""

from __future__ import annotations

from mailcore.delivery.lmtp.agent import AFTER_DOT, AddressResolver, LmtpAgent
from mailcore.delivery.lmtp.proto import (
    KNOWN_PORTS,
    Nexthop,
    Peer,
    failure,
    inet_peer,
    mail_command,
    needs_smtputf8,
    orcpt_param,
    parse_nexthop,
    parse_port,
    rcpt_command,
    size_limit,
    stream_failure,
    unix_peer,
    utf8_addr_xtext,
)
from mailcore.delivery.lmtp.settings import LmtpSettings

__all__ = [
    "AFTER_DOT", "KNOWN_PORTS", "AddressResolver", "LmtpAgent", "LmtpSettings", "Nexthop",
    "Peer", "failure", "inet_peer", "mail_command", "needs_smtputf8", "orcpt_param",
    "parse_nexthop", "parse_port", "rcpt_command", "size_limit", "stream_failure",
    "unix_peer", "utf8_addr_xtext",
]
