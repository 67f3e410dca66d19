"""The seed's "Postponing mail relay" slide end to end: mail for abc.com waits behind
defer_transports = ondemand until the customer's ETRN (or postqueue -s abc.com) flushes it."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.client import raw_session, reply_lines
from support.peer import Peer, Script
from support.smtpd import running_server

pytestmark = pytest.mark.integration


async def test_etrn_flushes_a_deferred_site(tmp_path):
    async with Peer(Script()) as customer:
        transport = tmp_path / "transport"
        transport.write_text(f"abc.com ondemand:[127.0.0.1]:{customer.port}\n")
        settings = {"relay_domains": "abc.com", "transport_maps": f"texthash:{transport}",
                    "defer_transports": "ondemand"}
        services = "ondemand unix - - n - - smtp\n"
        async with running_server(tmp_path, settings, services=services) as srv:
            sent = await raw_session(srv.host, srv.port, (
                b"EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@abc.com>\r\n"
                b"DATA\r\nSubject: waiting\r\n\r\nx\r\n.\r\nQUIT\r\n"))
            assert any(r.startswith("250 2.0.0 Ok: queued") for r in reply_lines(sent))
            deadline = time.monotonic() + 10
            while "status=deferred (deferred transport)" not in srv.log:
                assert time.monotonic() < deadline, srv.log
                await asyncio.sleep(0.05)
            assert customer.messages == []
            etrn = reply_lines(await raw_session(
                srv.host, srv.port, b"EHLO c.test\r\nETRN other.example\r\nETRN abc.com\r\n"
                                    b"QUIT\r\n"))
            assert "459 4.3.0 <other.example>: service unavailable" in etrn
            assert "250 2.0.0 Queuing started" in etrn
            while not customer.messages:
                assert time.monotonic() < deadline, srv.log
                await asyncio.sleep(0.05)
    assert b"Subject: waiting" in customer.messages[0]
