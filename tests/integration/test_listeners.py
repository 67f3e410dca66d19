"""master.cf inet services become listeners: several at once, IPv4 and IPv6, each with its
own -o overrides (issue 3, smtpd listeners)."""

from __future__ import annotations

import socket

import pytest
from support.client import raw_session, reply_lines
from support.smtpd import free_port, running_server

pytestmark = pytest.mark.integration


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ipv4_and_ipv6_listeners_with_their_own_overrides(tmp_path):
    if not ipv6_loopback():
        pytest.fail("no IPv6 loopback (::1) on this machine")
    port6 = free_port("::1")
    services = (f"[::1]:{port6} inet n - n - - smtpd\n"
                "  -o { smtpd_banner = $myhostname ESMTP six }\n")
    async with running_server(tmp_path, services=services) as srv:
        script = (b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@mx.test>\r\n"
                  b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
        four = reply_lines(await raw_session(srv.host, srv.port, script))
        six = reply_lines(await raw_session("::1", port6, script))
        assert four[0] == "220 mx.test ESMTP mailcore"
        assert six[0] == "220 mx.test ESMTP six"
        assert sum(r.startswith("250 2.0.0 Ok: queued as") for r in four + six) == 2
        assert len(await srv.messages()) == 2
    assert "connect from unknown[::1]" in srv.log
