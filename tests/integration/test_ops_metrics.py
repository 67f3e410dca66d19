"""The metrics endpoint scraped over HTTP while mail flows: a message received from SMTP and
relayed to a loopback peer moves the counters; queue sizes and commit latency are there."""

from __future__ import annotations

import asyncio
import time

import aiosmtplib
import pytest
from support.peer import Peer, Script
from support.smtpd import free_port, running_server

pytestmark = pytest.mark.integration

SERVICES = "smtp unix - - n - - smtp\n"


async def http(port: int, request: bytes) -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    status, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status, headers, body


async def scrape(port: int) -> dict[str, float]:
    status, headers, body = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body.encode())
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value.replace("+Inf", "inf"))
    return samples


async def test_counters_move_when_mail_is_received_and_delivered(tmp_path):
    metrics_port = free_port()
    async with Peer(Script()) as peer:
        settings = {"relayhost": f"[127.0.0.1]:{peer.port}",
                    "metrics_listen": f"127.0.0.1:{metrics_port}"}
        async with running_server(tmp_path, settings, services=SERVICES) as srv:
            listener = f"127.0.0.1:{srv.port}"
            before = await scrape(metrics_port)
            assert before["mailcore_messages_received_total"] == 0
            assert f'mailcore_smtpd_connections_total{{listener="{listener}"}}' not in before
            _, reply = await aiosmtplib.send(
                "Subject: m\r\n\r\nhi\r\n", sender="a@client.test", recipients=["b@far.example"],
                hostname=srv.host, port=srv.port, local_hostname="client.test")
            queue_id = reply.rsplit(" ", 1)[1]
            deadline = time.monotonic() + 15
            while await srv.queue.get(queue_id) is not None:
                assert time.monotonic() < deadline, srv.log
                await asyncio.sleep(0.05)
            after = await scrape(metrics_port)
    assert len(peer.messages) == 1
    assert after["mailcore_messages_received_total"] == 1
    assert after[f'mailcore_smtpd_connections_total{{listener="{listener}"}}'] == 1
    assert after['mailcore_deliveries_total{transport="smtp",status="sent"}'] == 1
    assert 'mailcore_deliveries_total{transport="smtp",status="deferred"}' not in after
    assert after['mailcore_queue_messages{state="incoming"}'] == 0
    assert after['mailcore_queue_messages{state="deferred"}'] == 0
    commits = after["mailcore_queue_commit_seconds_count"]
    assert commits > before["mailcore_queue_commit_seconds_count"]
    assert after['mailcore_queue_commit_seconds_bucket{le="+Inf"}'] == commits
    assert after["mailcore_queue_commit_seconds_sum"] > 0
    assert after["mailcore_start_time_seconds"] <= time.time()


async def test_destination_concurrency_shows_a_delivery_in_flight(tmp_path):
    metrics_port = free_port()
    # The peer never answers DATA's end: the delivery stays in flight while we scrape.
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.test ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"QUIT"):
                break
            await release.wait()
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = {"relayhost": f"[127.0.0.1]:{port}", "metrics_listen": f"127.0.0.1:{metrics_port}",
                "smtp_helo_timeout": "20s"}
    try:
        async with running_server(tmp_path, settings, services=SERVICES) as srv:
            await aiosmtplib.send("Subject: m\r\n\r\nhi\r\n", sender="a@client.test",
                                  recipients=["b@far.example"], hostname=srv.host,
                                  port=srv.port, local_hostname="client.test")
            key = ('mailcore_destination_concurrency'
                   f'{{transport="smtp",nexthop="[127.0.0.1]:{port}"}}')
            deadline = time.monotonic() + 10
            while (await scrape(metrics_port)).get(key) != 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            release.set()
    finally:
        release.set()
        server.close()


async def test_only_get_metrics_is_served(tmp_path):
    metrics_port = free_port()
    async with running_server(tmp_path, {"metrics_listen": f"127.0.0.1:{metrics_port}"}):
        status, _, _ = await http(metrics_port, b"GET / HTTP/1.1\r\n\r\n")
        assert status.startswith("HTTP/1.1 404")
        status, headers, _ = await http(metrics_port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status.startswith("HTTP/1.1 405") and headers["allow"] == "GET, HEAD"
        status, _, body = await http(metrics_port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and body == ""


async def test_no_endpoint_unless_configured(tmp_path):
    port = free_port()
    async with running_server(tmp_path):
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
