"""The control channel against a real MailSystem in this process: round trips over the unix
socket, its permissions, a stale socket, a second server on the same queue, and status /
flush / wakeup / stop as the tools send them."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import stat
import time

import aiosmtplib
import pytest
from support.smtpd import make_config, running_server

from mailcore.app import MailSystem
from mailcore.control import ControlError, ServerNotRunning, request
from mailcore.errors import MailcoreError
from mailcore.log import MailLog
from mailcore.queue import DEFERRED, INCOMING, STATES

pytestmark = pytest.mark.integration


async def send(host: str, port: int, rcpt: str = "user@mx.test") -> str:
    _, reply = await aiosmtplib.send("Subject: t\r\n\r\nbody\r\n", sender="a@client.test",
                                     recipients=[rcpt], hostname=host, port=port,
                                     local_hostname="client.test")
    return reply.rsplit(" ", 1)[1]


async def test_status_round_trip(tmp_path):
    async with running_server(tmp_path) as srv:
        path = srv.config.get_path("control_socket")
        assert path == tmp_path / "queue" / "control"
        await send(srv.host, srv.port)
        status = await request(path, "status")
    assert isinstance(status, dict)
    assert status["pid"] == os.getpid()
    assert status["listeners"] == [[srv.host, srv.port]]
    assert set(status["queue"]) == set(STATES)
    assert sum(status["queue"].values()) == 1
    assert status["uptime"] >= 0 and status["version"]
    assert status["config_directory"] == str(tmp_path)


async def test_socket_is_private_and_removed_on_stop(tmp_path):
    async with running_server(tmp_path) as srv:
        path = srv.config.get_path("control_socket")
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists()
    with pytest.raises(ServerNotRunning):
        await request(path, "status")


async def test_unknown_operation_and_bad_arguments_are_errors(tmp_path):
    async with running_server(tmp_path) as srv:
        path = srv.config.get_path("control_socket")
        with pytest.raises(ControlError, match="unknown operation"):
            await request(path, "explode")
        with pytest.raises(ControlError, match="bad arguments"):
            await request(path, "flush_site", nonsense=1)
        # and the channel still answers afterwards
        assert isinstance(await request(path, "status"), dict)


async def test_a_stale_socket_is_replaced(tmp_path):
    config = make_config(tmp_path)
    path = config.get_path("control_socket")
    path.parent.mkdir(mode=0o700, parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays; connecting to it is refused, as after a crash
    with pytest.raises(ServerNotRunning):
        await request(path, "status")
    log = MailLog(hostname="mx.test", stream=io.StringIO())
    async with MailSystem(config, log=log):
        assert isinstance(await request(path, "status"), dict)


async def test_a_second_server_on_the_same_queue_is_refused(tmp_path):
    async with running_server(tmp_path) as srv:
        other = make_config(tmp_path)  # same queue_directory, another port
        log = MailLog(hostname="mx.test", stream=io.StringIO())
        with pytest.raises(MailcoreError, match="already running"):
            async with MailSystem(other, log=log):
                pass
        # the running one keeps its socket
        assert isinstance(await request(srv.config.get_path("control_socket"), "status"), dict)


async def test_a_socket_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    config = make_config(tmp_path, {"control_socket": str(shared / "control")})
    log = MailLog(hostname="mx.test", stream=io.StringIO())
    with pytest.raises(MailcoreError, match="writable by group or others"):
        async with MailSystem(config, log=log):
            pass
    assert not (shared / "control").exists()


async def test_flush_id_and_flush_site_reach_the_scheduler(tmp_path):
    # A deferred message whose retry time is far away: flush_id brings it back to incoming.
    async with running_server(tmp_path, {"relayhost": "[127.0.0.1]:9"},
                              services="smtp unix - - n - - smtp\n") as srv:
        path = srv.config.get_path("control_socket")
        queue_id = await send(srv.host, srv.port, "x@far.example")
        deadline = time.monotonic() + 15
        while (await srv.queue.get(queue_id)).state != DEFERRED:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, srv.log
            await asyncio.sleep(0.05)
        attempts = srv.log.count(f"{queue_id}: to=<x@far.example>")
        assert await request(path, "flush_id", queue_id="NOSUCHID") is False
        assert await request(path, "flush_id", queue_id=queue_id) is True
        deadline = time.monotonic() + 15
        while srv.log.count(f"{queue_id}: to=<x@far.example>") == attempts:
            assert time.monotonic() < deadline, srv.log
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 15
        while (await srv.queue.get(queue_id)).state != DEFERRED:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await request(path, "flush_site", site="elsewhere.example") == 0
        assert await request(path, "flush_site", site="far.example") == 1
        assert await request(path, "flush") is None
        assert await request(path, "wakeup") is None
        message = await srv.queue.get(queue_id)
        assert message is not None and message.state in (INCOMING, "active", DEFERRED)


async def test_stop_through_the_channel_ends_serve(tmp_path):
    config = make_config(tmp_path)
    stream = io.StringIO()
    path = config.get_path("control_socket")
    async with MailSystem(config, log=MailLog(hostname="mx.test", stream=stream)) as system:
        waiter = asyncio.create_task(system.wait())
        await asyncio.sleep(0)
        host, port = system.smtpd.bound_addresses()[0]  # type: ignore[union-attr]
        queue_id = await send(host, port)
        assert await request(path, "stop") is None
        async with asyncio.timeout(5):
            await waiter
    assert "terminating on signal or request" in stream.getvalue()
    with pytest.raises(ServerNotRunning):
        await request(path, "status")
    # everything committed: the queue opens again with the message in it
    async with MailSystem(config, log=MailLog(hostname="mx.test", stream=io.StringIO())) as again:
        assert again.queue is not None and await again.queue.get(queue_id) is not None
