"""The queue tools against a running mailcore: the commands go through the control channel
(the CLI runs in a thread, as a separate process would), the scheduler applies them, and a
next hop on loopback that holds the end of DATA until the test lets it answer shows that a
deleted message is never delivered once ``delete`` returned."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest
from support.smtpd import running_server

from mailcore import cli
from mailcore.cli_queue import Streams, run_queue
from mailcore.config import Config
from mailcore.mailq import iter_listing, write_listing

pytestmark = pytest.mark.integration

SERVICES = "smtp unix - - n - 1 smtp\nrelay unix - - n - 1 smtp\n"


@dataclass
class HoldingPeer:
    """An SMTP next hop that answers the end of DATA only when ``release`` is set, with
    ``final`` (a 4xx makes the sender defer and try again)."""

    final: str = "250 2.0.0 Ok"
    release: asyncio.Event = field(default_factory=asyncio.Event)
    in_data: asyncio.Event = field(default_factory=asyncio.Event)
    sessions: int = 0
    delivered: list[float] = field(default_factory=list)  # when each message was accepted
    rcpts: list[str] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        try:
            writer.write(b"220 peer.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-peer.test\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    self.rcpts.append(line.decode().strip())
                    writer.write(b"250 Ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    self.in_data.set()
                    await self.release.wait()
                    if self.final.startswith("2"):
                        self.delivered.append(time.monotonic())
                    writer.write(self.final.encode() + b"\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 Ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def cli_run(config: Config, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """``mailcore queue ARGV`` as a separate process would run it (call it in a thread)."""
    ns = cli.build_parser().parse_args(["queue", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = run_queue(ns, lambda: config, streams=Streams(out, err, io.StringIO(stdin),
                                                           tty=False))
    return status, out.getvalue(), err.getvalue()


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def submit(srv, recipients: list[str]) -> str:  # type: ignore[no-untyped-def]
    _, reply = await aiosmtplib.send(
        "Subject: t\r\n\r\nbody\r\n", sender="alice@client.test", recipients=recipients,
        hostname=srv.host, port=srv.port, local_hostname="client.test")
    return reply.rsplit(" ", 1)[1]


def settings(port: int, **more: str) -> dict[str, str]:
    return {"relayhost": f"[127.0.0.1]:{port}", "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s", "queue_run_delay": "1s", **more}


async def test_delete_of_an_active_message_is_never_delivered_afterwards(
        tmp_path: Path) -> None:
    peer = HoldingPeer(final="451 4.3.0 try again later")
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # One recipient per delivery and one delivery at a time: while the first is held
        # at DATA, the second waits in the scheduler, not yet started.
        more = {"smtp_destination_recipient_limit": "1"}
        async with running_server(tmp_path, settings(port, **more), services=SERVICES) as srv:
            queue_id = await submit(srv, ["bob@far.example", "carol@far.example"])
            await asyncio.wait_for(peer.in_data.wait(), 10)
            assert (await srv.queue.state_of(queue_id)) == "active"
            deleting = asyncio.create_task(asyncio.to_thread(cli_run, srv.config, "delete",
                                                             queue_id))
            await asyncio.sleep(0.5)
            assert not deleting.done()  # it waits for the delivery in flight
            assert (await srv.queue.get(queue_id)) is not None
            peer.release.set()
            status, _, err = await asyncio.wait_for(deleting, 10)
            returned = time.monotonic()
            assert status == 0 and err == "mailcore queue: Deleted: 1 message\n"
            assert await srv.queue.get(queue_id) is None
            sessions = peer.sessions
            # Without the delete, the deferred recipient and the waiting one would be tried
            # within a second or two; a flush asks for everything at once.
            assert (await asyncio.to_thread(cli_run, srv.config, "flush"))[0] == 0
            await asyncio.sleep(2.5)
            assert peer.sessions == sessions == 1
            assert peer.rcpts == ["RCPT TO:<bob@far.example>"]
            assert all(t < returned for t in peer.delivered)
        assert f"{queue_id}: removed" in srv.log
    finally:
        server.close()
        await server.wait_closed()


async def test_hold_of_an_active_message_records_the_attempt_then_holds(
        tmp_path: Path) -> None:
    peer = HoldingPeer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        more = {"smtp_destination_recipient_limit": "1"}
        async with running_server(tmp_path, settings(port, **more), services=SERVICES) as srv:
            queue_id = await submit(srv, ["bob@far.example", "carol@far.example"])
            await asyncio.wait_for(peer.in_data.wait(), 10)
            holding = asyncio.create_task(asyncio.to_thread(cli_run, srv.config, "hold",
                                                            queue_id))
            await asyncio.sleep(0.3)
            assert not holding.done()
            peer.release.set()
            status, _, err = await asyncio.wait_for(holding, 10)
            assert status == 0 and err == "mailcore queue: Placed on hold: 1 message\n"
            message = await srv.queue.get(queue_id)
            assert message is not None and message.state == "hold"
            assert [(r.address, r.status) for r in message.recipients] == [
                ("bob@far.example", "sent"), ("carol@far.example", "pending")]
            await asyncio.sleep(1.5)
            assert peer.rcpts == ["RCPT TO:<bob@far.example>"]  # nothing while on hold
            _, out, _ = await asyncio.to_thread(cli_run, srv.config, "list")
            assert out.splitlines()[1].startswith(f"{queue_id}!")
            # Requeue: back to incoming and delivered at once to the remaining recipient.
            status, _, err = await asyncio.to_thread(cli_run, srv.config, "requeue", "-",
                                                     stdin=f"{queue_id}\n")
            assert err == "mailcore queue: Requeued: 1 message\n"

            async def gone() -> bool:
                return await srv.queue.get(queue_id) is None

            await wait_for(gone)
            assert peer.rcpts == ["RCPT TO:<bob@far.example>", "RCPT TO:<carol@far.example>"]
    finally:
        server.close()
        await server.wait_closed()


async def test_listing_show_release_and_flush_while_running(tmp_path: Path) -> None:
    # The next hop refuses connections (nothing listens), so mail is deferred.
    async with running_server(tmp_path, settings(9, minimal_backoff_time="300s",
                                                  maximal_backoff_time="600s",
                                                  queue_run_delay="300s"),
                              services=SERVICES) as srv:
        first = await submit(srv, ["bob@far.example"])
        second = await submit(srv, ["carol@other.example", "dave@other.example"])

        async def deferred() -> bool:
            counts = await srv.queue.counts()
            return counts["deferred"] == 2

        await wait_for(deferred)
        status, out, _ = await asyncio.to_thread(cli_run, srv.config, "list")
        expected = io.StringIO()
        write_listing(iter_listing(srv.config.get_path("queue_directory")), expected)
        assert status == 0 and out == expected.getvalue()
        assert out.startswith("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient")
        assert "(connect to 127.0.0.1[127.0.0.1]:9: Connection refused)" in out
        assert out.endswith(" Kbytes in 2 Requests.\n")
        _, out, _ = await asyncio.to_thread(cli_run, srv.config, "show", "--envelope", second)
        assert f"*** ENVELOPE RECORDS deferred/{second} ***" in out
        assert "recipient: dave@other.example\nrecipient_status: deferred 4.4.1" in out
        _, out, _ = await asyncio.to_thread(cli_run, srv.config, "shape", "deferred")
        assert [line.split()[:2] for line in out.splitlines()[1:]] == [
            ["TOTAL", "3"], ["other.example", "2"], ["far.example", "1"]]
        status, _, err = await asyncio.to_thread(cli_run, srv.config, "hold", "ALL")
        assert err == "mailcore queue: Placed on hold: 2 messages\n"
        status, _, err = await asyncio.to_thread(cli_run, srv.config, "release", first)
        assert err == "mailcore queue: Released from hold: 1 message\n"
        assert (await srv.queue.state_of(first)) == "deferred"
        before = srv.log.count(f"{first}: to=<bob@far.example>")
        assert (await asyncio.to_thread(cli_run, srv.config, "flush", "--site",
                                        "far.example"))[0] == 0

        async def retried() -> bool:
            return srv.log.count(f"{first}: to=<bob@far.example>") > before

        await wait_for(retried)
        assert (await srv.queue.state_of(second)) == "hold"
        status, _, err = await asyncio.to_thread(cli_run, srv.config, "delete", "ALL")
        assert err == "mailcore queue: Deleted: 2 messages\n"
        assert dict(await srv.queue.counts()) == dict.fromkeys(
            ("incoming", "active", "deferred", "hold", "corrupt"), 0)
