"""LMTP as plain functions: next-hop forms, peer names, the commands and the reply wording.

Owns: parsing ``unix:/path``, ``inet:host[:port]``, ``host[:port]`` and ``[addr][:port]``;
the "host X[Y]" and relay names; MAIL FROM with SIZE, BODY=8BITMIME, SMTPUTF8 and DSN
RET/ENVID, RCPT TO with NOTIFY/ORCPT (xtext, or utf-8-addr-xtext for non-ASCII); and the
(status, dsn, reason) a refusing reply or a broken stream gives, worded as Postfix.
Must not: do I/O of any kind (no sockets, no DNS, no files), or hold state.
Invariants: a reply is settled as a failure only with a 4xx/5xx status, anything else is a
protocol error (5.5.0); a broken or timed-out stream defers (4.4.2, or 4.5.0 for a
malformed reply), never bounces; classification is mailcore.status.classify.
Parameters: none (lmtp_tcp_port and myhostname are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.address import parse_address, xtext_encode
from mailcore.delivery.wire import MalformedReply, WireError, WireReply, WireTimeout
from mailcore.model import BOUNCED, DEFERRED, DeliveryRequest, RecipientRef
from mailcore.status import classify

KNOWN_PORTS = {"lmtp": 24, "smtp": 25}  # Postfix's known_tcp_ports for the names that matter


# --- next hop ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Nexthop:
    kind: str  # "unix" or "inet"
    host: str = ""  # inet: a name or an address (IPv6 without brackets)
    port: int = 0
    path: str = ""  # unix


def parse_port(text: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    if text.lower() in KNOWN_PORTS:
        return KNOWN_PORTS[text.lower()]
    raise ValueError(f"bad port {text!r}")


def parse_nexthop(nexthop: str, default_port: str = "24") -> Nexthop:
    """``unix:/path``, ``inet:host[:port]``, ``host[:port]``, ``[addr][:port]``."""
    kind, sep, rest = nexthop.partition(":")
    if sep and kind.lower() == "unix":
        if not rest or "\0" in rest:
            raise ValueError("empty unix socket path")
        return Nexthop("unix", path=rest)
    if not (sep and kind.lower() == "inet"):
        rest = nexthop
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"bad host {rest!r}")
        port_text = tail[1:] if tail else default_port
    else:
        host, _, port_text = rest.partition(":")
        port_text = port_text or default_port
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"bad host {host!r}")
    return Nexthop("inet", host.lower().rstrip("."), parse_port(port_text))


@dataclass(frozen=True)
class Peer:
    """Who we talk to: ``name`` as in "host X said", ``relay`` as in the maillog."""

    name: str
    relay: str


def unix_peer(myhostname: str, path: str) -> Peer:
    name = f"{myhostname}[{path}]"
    return Peer(name, name)


def inet_peer(host: str, addr: str, port: int) -> Peer:
    name = f"{host}[{addr}]"
    return Peer(name, f"{name}:{port}")


# --- commands (plain functions) ----------------------------------------------------------


def smtp_path(address: str) -> str:
    """``<address>`` as MAIL FROM/RCPT TO write it; raises AddressError when it cannot be."""
    return "<" + (parse_address(address).text if address else "") + ">"


def utf8_addr_xtext(address: str) -> str:
    """RFC 6533 utf-8-addr-xtext for a non-ASCII ORCPT."""
    return "".join(ch if 33 <= ord(ch) <= 126 and ch not in "+=\\" else f"\\x{{{ord(ch):X}}}"
                   for ch in address)


def orcpt_param(ref: RecipientRef) -> str:
    """ORCPT from the recorded one, else from the original recipient (as Postfix)."""
    addr_type, address = "rfc822", ref.orig_rcpt or ""
    if ref.orcpt:
        addr_type, _, address = ref.orcpt.partition(";")
    if not address:
        return ""
    if address.isascii() and addr_type.lower() != "utf-8":
        return f" ORCPT={addr_type};{xtext_encode(address)}"
    return f" ORCPT=utf-8;{utf8_addr_xtext(address)}"


def mail_command(request: DeliveryRequest, features: dict[str, str]) -> str:
    attrs = dict(request.attrs)
    parts = [f"MAIL FROM:{smtp_path(request.sender)}"]
    if "SIZE" in features:
        parts.append(f"SIZE={request.size}")
    if "8BITMIME" in features and attrs.get("body_type", "").upper() == "8BITMIME":
        parts.append("BODY=8BITMIME")
    if "SMTPUTF8" in features and attrs.get("smtputf8") == "yes":
        parts.append("SMTPUTF8")
    if "DSN" in features:
        if request.ret:
            parts.append(f"RET={request.ret.upper()}")
        if request.envid:
            parts.append(f"ENVID={xtext_encode(request.envid)}")
    return " ".join(parts)


def rcpt_command(ref: RecipientRef, features: dict[str, str]) -> str:
    line = f"RCPT TO:{smtp_path(ref.address)}"
    if "DSN" in features:
        if ref.notify:
            line += f" NOTIFY={ref.notify.upper()}"
        line += orcpt_param(ref)
    return line


def size_limit(features: dict[str, str]) -> int:
    value = features.get("SIZE", "")
    return int(value) if value.isdigit() else 0


def needs_smtputf8(request: DeliveryRequest) -> bool:
    addresses = [request.sender, *(r.address for r in request.recipients)]
    return dict(request.attrs).get("smtputf8") == "yes" and not all(
        a.isascii() for a in addresses)


def failure(reply: WireReply, peer: Peer, command: str) -> tuple[str, str, str]:
    """(status, dsn, reason) for a reply that refused what we asked, worded as Postfix."""
    said = f"host {peer.name} said: {reply.text} (in reply to {command} command)"
    dsn = reply.dsn
    if dsn[:1] not in ("4", "5"):  # e.g. 250 to DATA: Postfix calls it a protocol error
        return BOUNCED, "5.5.0", f"Protocol error: {said}"
    return (BOUNCED if classify(reply.code, dsn) == "permanent" else DEFERRED), dsn, said


def stream_failure(exc: WireError, peer: Peer, phase: str) -> tuple[str, str, str]:
    if isinstance(exc, WireTimeout):
        return DEFERRED, "4.4.2", f"conversation with {peer.name} timed out while {phase}"
    if isinstance(exc, MalformedReply):
        text = f": {exc.line}" if exc.line else ""
        return DEFERRED, "4.5.0", f"host {peer.name} sent a malformed reply while {phase}{text}"
    return DEFERRED, "4.4.2", f"lost connection with {peer.name} while {phase}"
