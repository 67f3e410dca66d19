"""The LMTP agent's plain functions: next-hop forms, relay names, reply wording, ORCPT."""

from __future__ import annotations

import pytest

from mailcore.delivery.lmtp import (
    Nexthop,
    failure,
    inet_peer,
    orcpt_param,
    parse_nexthop,
    stream_failure,
    unix_peer,
)
from mailcore.delivery.wire import MalformedReply, PeerClosed, WireReply, WireTimeout
from mailcore.model import BOUNCED, DEFERRED, RecipientRef


@pytest.mark.parametrize(("text", "expected"), [
    ("unix:/run/dovecot/lmtp", Nexthop("unix", path="/run/dovecot/lmtp")),
    ("unix:private/dovecot-lmtp", Nexthop("unix", path="private/dovecot-lmtp")),
    ("inet:127.0.0.1:2424", Nexthop("inet", "127.0.0.1", 2424)),
    ("inet:Store.Example.:lmtp", Nexthop("inet", "store.example", 24)),
    ("inet:store.example", Nexthop("inet", "store.example", 24)),
    ("store.example:26", Nexthop("inet", "store.example", 26)),
    ("[::1]:2424", Nexthop("inet", "::1", 2424)),
    ("inet:[::1]", Nexthop("inet", "::1", 24)),
])
def test_parse_nexthop(text: str, expected: Nexthop) -> None:
    assert parse_nexthop(text, "24") == expected


def test_default_port_comes_from_lmtp_tcp_port() -> None:
    assert parse_nexthop("inet:host.example", "2003").port == 2003


@pytest.mark.parametrize("bad", ["unix:", "inet:", "inet:host:0", "inet:host:99999",
                                 "inet:host:nosuch", "[::1", "[::1]x", "a b:24", "inet:/x"])
def test_bad_nexthops(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(bad, "24")


def test_relay_names_as_postfix_logs_them() -> None:
    assert unix_peer("mail.example.com", "/var/run/lmtp").relay == "mail.example.com[/var/run/lmtp]"
    peer = inet_peer("store.example", "192.0.2.7", 24)
    assert (peer.name, peer.relay) == ("store.example[192.0.2.7]",
                                       "store.example[192.0.2.7]:24")


PEER = inet_peer("h.example", "192.0.2.1", 24)


@pytest.mark.parametrize(("lines", "code", "status", "dsn"), [
    (("5.1.1 <u@x> unknown",), 550, BOUNCED, "5.1.1"),
    (("4.2.2 <u@x> over quota",), 452, DEFERRED, "4.2.2"),
    (("try later",), 421, DEFERRED, "4.0.0"),
    (("no such user",), 550, BOUNCED, "5.0.0"),
])
def test_failure_wording_and_class(lines, code, status, dsn) -> None:
    got = failure(WireReply(code, lines), PEER, "end of DATA")
    assert got == (status, dsn, f"host h.example[192.0.2.1] said: {code} {lines[0]} "
                                "(in reply to end of DATA command)")


def test_unexpected_success_code_is_protocol_error() -> None:
    status, dsn, reason = failure(WireReply(250, ("ok",)), PEER, "DATA")
    assert (status, dsn) == (BOUNCED, "5.5.0")
    assert reason == "Protocol error: host h.example[192.0.2.1] said: 250 ok (in reply to " \
                     "DATA command)"


def test_stream_failures_defer() -> None:
    assert stream_failure(PeerClosed("x"), PEER, "sending RCPT TO") == (
        DEFERRED, "4.4.2", "lost connection with h.example[192.0.2.1] while sending RCPT TO")
    assert stream_failure(WireTimeout("x"), PEER, "sending MAIL FROM") == (
        DEFERRED, "4.4.2",
        "conversation with h.example[192.0.2.1] timed out while sending MAIL FROM")
    assert stream_failure(MalformedReply("x", b"junk\r\n"), PEER, "sending DATA command")[:2] \
        == (DEFERRED, "4.5.0")


@pytest.mark.parametrize(("ref", "expected"), [
    (RecipientRef(1, "a@x"), ""),
    (RecipientRef(1, "a@x", orig_rcpt="A+b@y"), " ORCPT=rfc822;A+2Bb@y"),
    (RecipientRef(1, "a@x", orig_rcpt="o@y", orcpt="rfc822;r@y"), " ORCPT=rfc822;r@y"),
    (RecipientRef(1, "a@x", orcpt="utf-8;\u00fc=@y"), " ORCPT=utf-8;\\x{FC}\\x{3D}@y"),
])
def test_orcpt(ref: RecipientRef, expected: str) -> None:
    assert orcpt_param(ref) == expected
