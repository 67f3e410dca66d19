"""Reload in a running MailSystem: main.cf, master.cf and tables are read again; sessions
open at the reload keep the old behaviour, new sessions get the new one; listeners come and
go; a configuration that does not work is refused and the old one keeps running."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiosmtplib
import pytest
from support.smtpd import BASE_SETTINGS, free_port

from mailcore.app import MailSystem
from mailcore.config import load_config
from mailcore.control import ControlError, request
from mailcore.errors import MailcoreError
from mailcore.log import MailLog

pytestmark = pytest.mark.integration


def write_config(directory: Path, settings: Mapping[str, str], master: str) -> None:
    merged = {**BASE_SETTINGS, "queue_directory": str(directory / "queue"),
              "shutdown_grace_time": "2s", **settings}
    (directory / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in merged.items()))
    (directory / "master.cf").write_text(master)


def restrictions(table: Path, *extra: str) -> dict[str, str]:
    steps = [f"check_recipient_access texthash:{table}", *extra, "reject_unauth_destination"]
    return {"smtpd_relay_restrictions": "", "smtpd_recipient_restrictions": ", ".join(steps)}


@asynccontextmanager
async def system_in(directory: Path) -> AsyncIterator[tuple[MailSystem, io.StringIO]]:
    stream = io.StringIO()
    async with MailSystem(load_config(directory),
                          log=MailLog(hostname="mx.test", stream=stream)) as system:
        yield system, stream


async def session(port: int) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="client.test",
                           timeout=10)
    await smtp.connect()
    await smtp.ehlo()
    await smtp.mail("sender@client.test")
    return smtp


async def rcpt(smtp: aiosmtplib.SMTP, address: str) -> tuple[int, str]:
    response = await smtp.execute_command(f"RCPT TO:<{address}>".encode())
    return response.code, response.message


async def refused(port: int) -> bool:
    try:
        smtp = await session(port)
    except (aiosmtplib.SMTPConnectError, OSError):
        return True
    await smtp.quit()
    return False


async def test_reload_changes_restrictions_and_a_table_while_a_session_is_open(tmp_path):
    old_table, new_table = tmp_path / "access-old", tmp_path / "access-new"
    old_table.write_text("old@mx.test REJECT old rule\n")
    new_table.write_text("new@mx.test REJECT new rule\n")
    port = free_port()
    master = f"127.0.0.1:{port} inet n - n - - smtpd\n"
    write_config(tmp_path, restrictions(old_table, "permit_mynetworks"), master)
    async with system_in(tmp_path) as (system, log):
        before = await session(port)
        assert (await rcpt(before, "far@elsewhere.test"))[0] == 250  # mynetworks may relay
        # New table and new list: mynetworks no longer relays.
        write_config(tmp_path, restrictions(new_table), master)
        await system.reload()
        after = await session(port)

        # The session open at the reload: old table, old list.
        code, text = await rcpt(before, "old@mx.test")
        assert code == 554 and "old rule" in text
        assert (await rcpt(before, "new@mx.test"))[0] == 250
        assert (await rcpt(before, "far2@elsewhere.test"))[0] == 250
        # A session opened after it: the new ones.
        assert (await rcpt(after, "old@mx.test"))[0] == 250
        code, text = await rcpt(after, "new@mx.test")
        assert code == 554 and "new rule" in text
        code, text = await rcpt(after, "far@elsewhere.test")
        assert code == 554 and "Relay access denied" in text
        for smtp in (before, after):
            await smtp.quit()
    assert f"reload -- version {system.config.get('mail_version')}, configuration " \
           f"{tmp_path}" in log.getvalue()


async def test_reload_adds_and_removes_listeners(tmp_path):
    kept, removed, added = free_port(), free_port(), free_port()
    line = "127.0.0.1:{} inet n - n - - smtpd\n"
    write_config(tmp_path, {}, line.format(kept) + line.format(removed))
    async with system_in(tmp_path) as (system, _):
        open_on_removed = await session(removed)
        before = {tuple(a) for a in system.smtpd.bound_addresses()}  # type: ignore[union-attr]
        assert before == {("127.0.0.1", kept), ("127.0.0.1", removed)}
        write_config(tmp_path, {}, line.format(kept) + line.format(added))
        await system.reload()
        after = {tuple(a) for a in system.smtpd.bound_addresses()}  # type: ignore[union-attr]
        assert after == {("127.0.0.1", kept), ("127.0.0.1", added)}
        assert await refused(removed)
        assert not await refused(kept)
        assert not await refused(added)
        # A session on the listener that went away finishes normally.
        assert (await rcpt(open_on_removed, "user@mx.test"))[0] == 250
        await open_on_removed.quit()


async def test_an_unchanged_listener_keeps_its_socket(tmp_path):
    port = free_port()
    write_config(tmp_path, {}, f"127.0.0.1:{port} inet n - n - - smtpd\n")
    async with system_in(tmp_path) as (system, _):
        assert system.smtpd is not None
        sockets = [s.fileno() for s in system.smtpd._listeners[(("127.0.0.1",), port)]
                   .server.sockets]  # type: ignore[union-attr]
        write_config(tmp_path, {"smtpd_banner": "$myhostname ESMTP reloaded"},
                     f"127.0.0.1:{port} inet n - n - - smtpd\n")
        await system.reload()
        listener = system.smtpd._listeners[(("127.0.0.1",), port)]
        assert [s.fileno() for s in listener.server.sockets] == sockets  # type: ignore[union-attr]
        # and new sessions get the new settings through it
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="c.test")
        greeting = await smtp.connect()
        assert "ESMTP reloaded" in greeting.message
        await smtp.quit()


@pytest.mark.parametrize("breakage,expected", [
    ({"smtpd_recipient_restrictions": "permit_mynetworks, no_such_restriction"},
     "unknown restriction: no_such_restriction"),
    ({"smtpd_recipient_restrictions": "check_recipient_access texthash:/nonexistent/t, "
                                      "reject_unauth_destination"}, "/nonexistent/t"),
    ({"transport_maps": "regexp:{table}"}, "line 1"),
    ({"smtpd_timeout": "forever"}, "smtpd_timeout"),
    ({"metrics_listen": "nowhere"}, "metrics_listen"),
])
async def test_an_invalid_configuration_is_refused_and_the_old_one_kept(tmp_path, breakage,
                                                                         expected):
    table = tmp_path / "access"
    table.write_text("old@mx.test REJECT old rule\n")
    (tmp_path / "broken.regexp").write_text("/unclosed(/ smtp:\n")
    port = free_port()
    master = f"127.0.0.1:{port} inet n - n - - smtpd\n"
    write_config(tmp_path, restrictions(table, "permit_mynetworks"), master)
    async with system_in(tmp_path) as (system, log):
        bad = {k: v.format(table=tmp_path / "broken.regexp") for k, v in breakage.items()}
        write_config(tmp_path, {**restrictions(table, "permit_mynetworks"), **bad}, master)
        with pytest.raises(MailcoreError) as info:
            await system.reload()
        assert expected in str(info.value)
        assert "reload refused, the running configuration is kept" in log.getvalue()
        assert expected in log.getvalue()
        # through the control channel the tool gets the same text
        with pytest.raises(ControlError) as answered:
            await request(system.config.get_path("control_socket"), "reload")
        assert expected in str(answered.value)
        smtp = await session(port)
        code, text = await rcpt(smtp, "old@mx.test")
        assert code == 554 and "old rule" in text
        assert (await rcpt(smtp, "far@elsewhere.test"))[0] == 250
        await smtp.quit()
    assert "reload --" not in log.getvalue()


async def test_a_listener_that_cannot_be_opened_refuses_the_reload(tmp_path):
    port = free_port()
    master = f"127.0.0.1:{port} inet n - n - - smtpd\n"
    write_config(tmp_path, {}, master)
    async with system_in(tmp_path) as (system, _):
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            write_config(tmp_path, {}, master + f"127.0.0.1:{busy} inet n - n - - smtpd\n")
            with pytest.raises(MailcoreError, match="cannot listen"):
                await system.reload()
        assert [tuple(a) for a in system.smtpd.bound_addresses()] == [  # type: ignore[union-attr]
            ("127.0.0.1", port)]
        assert not await refused(port)
