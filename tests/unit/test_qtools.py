"""The queue tools with the server stopped: a real SQLite queue in a temporary directory,
messages enqueued through mailcore.queue, commands run through ``run_queue`` with a control
client that finds no server."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest

from mailcore import cli
from mailcore.cli_queue import Streams, run_queue
from mailcore.config import Config, from_mapping
from mailcore.control import ServerNotRunning
from mailcore.errors import UsageError
from mailcore.model import RecipientResult
from mailcore.postcat import ContentSplitter, format_envelope
from mailcore.progress import Progress
from mailcore.queue import (
    DEFERRED,
    HOLD,
    INCOMING,
    NewMessage,
    NewRecipient,
    Queue,
    QueuedMessage,
    QueuedRecipient,
    admin,
)
from mailcore.queue.admin import administer_offline, report_line, source_states

T = 1526703380.0  # Sat May 19 04:16:20 2018 UTC
BODY = b"Subject: hi\nFrom: a@b.example\n folded\n\nfirst body line\nSubject: not a header\n"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def no_server(*args: object, **kwargs: object) -> object:
    raise ServerNotRunning("the mail system is not running")


def config_for(tmp_path: Path) -> Config:
    return from_mapping({"queue_directory": str(tmp_path / "q"), "myhostname": "mx.test"},
                        config_dir=tmp_path)


async def fill(tmp_path: Path, states: list[str]) -> list[str]:
    queue = await Queue.open(tmp_path / "q")
    ids = []
    try:
        for n, state in enumerate(states):
            ids.append(await queue.enqueue(NewMessage(
                sender=f"s{n}@x.example", recipients=(
                    NewRecipient(f"r{n}@d{n % 2}.example", orig_rcpt=f"o{n}@x.example",
                                 notify="SUCCESS,FAILURE", orcpt=f"rfc822;o{n}@x.example"),
                    NewRecipient("common@z.example")),
                content_path=None, content=BODY, size=len(BODY), arrival_time=T + n,
                envid="ENV", ret="HDRS", attrs={"rewrite_context": "local"}, state=state)))
    finally:
        await queue.close()
    return ids


async def snapshot(tmp_path: Path) -> dict[str, QueuedMessage]:
    queue = await Queue.open(tmp_path / "q")
    try:
        return {m.queue_id: m async for m in queue.iter_messages()}
    finally:
        await queue.close()


def run(tmp_path: Path, *argv: str, stdin: str = "", tty: bool | None = False
        ) -> tuple[int, str, str]:
    ns = cli.build_parser().parse_args(["queue", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = run_queue(ns, lambda: config_for(tmp_path),
                       streams=Streams(out, err, io.StringIO(stdin), tty=tty), send=no_server,
                       clock=lambda: T + 3600)
    return status, out.getvalue(), err.getvalue()


def test_postsuper_defaults_and_reports() -> None:
    assert source_states(admin.DELETE, None) == {"hold", "incoming", "active", "deferred"}
    assert source_states(admin.HOLD_ACTION, None) == {"incoming", "active", "deferred"}
    assert source_states(admin.RELEASE, "deferred") == frozenset()
    assert source_states(admin.HOLD_ACTION, "hold") == frozenset()
    assert source_states(admin.REQUEUE, "corrupt") == frozenset()
    assert source_states(admin.DELETE, "corrupt") == {"corrupt"}
    with pytest.raises(ValueError):
        source_states(admin.DELETE, "bogus")
    assert report_line(admin.DELETE, 1) == "Deleted: 1 message"
    assert report_line(admin.RELEASE, 3) == "Released from hold: 3 messages"
    assert report_line(admin.HOLD_ACTION, 0) == ""


async def test_offline_actions_change_only_matching_states(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [INCOMING, DEFERRED, HOLD, DEFERRED])
    queue = await Queue.open(tmp_path / "q", clock=lambda: T + 999)
    try:
        await queue.record_results(ids[1], [], next_attempt=T + 50)
        held = await administer_offline(queue, admin.HOLD_ACTION, admin.ALL, "deferred")
        assert held.changed == (ids[1], ids[3]) and held.missing == ()
        released = await administer_offline(queue, admin.RELEASE, [ids[0], ids[1], "NOPE"])
        assert released.changed == (ids[1],) and released.missing == (ids[0], "NOPE")
        requeued = await administer_offline(queue, admin.REQUEUE, [ids[1], ids[1]])
        assert requeued.changed == (ids[1],) and requeued.missing == (ids[1],)
        again = await queue.get(ids[1])
        assert again is not None and again.state == INCOMING
        assert again.next_attempt is None and again.create_time == T + 999
        deleted = await administer_offline(queue, admin.DELETE, admin.ALL, "hold")
        assert deleted.changed == (ids[2], ids[3])
        assert await queue.get(ids[2]) is None
        assert [c async for c in queue.read_content(ids[0])] == [BODY]
    finally:
        await queue.close()
    assert set(await snapshot(tmp_path)) == {ids[0], ids[1]}


async def test_requeue_forgets_deferral_but_keeps_done_recipients(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [DEFERRED])
    queue = await Queue.open(tmp_path / "q")
    try:
        await queue.record_results(ids[0], [
            RecipientResult(0, "sent", "2.0.0", "250 ok", "mx"),
            RecipientResult(1, "deferred", "4.4.1", "connection timed out", "mx2")])
        await administer_offline(queue, admin.REQUEUE, ids)
        message = await queue.get(ids[0])
    finally:
        await queue.close()
    assert message is not None
    done, pending = message.recipients
    assert (done.status, done.done, done.reason) == ("sent", True, "250 ok")
    assert (pending.status, pending.reason, pending.dsn_status) == ("pending", None, None)


async def test_cli_delete_from_stdin_reports_like_postsuper(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [INCOMING, DEFERRED, HOLD])
    status, out, err = await asyncio.to_thread(
        run, tmp_path, "delete", "-", stdin=f"{ids[0]}\nnot-an-id\n\n{ids[2]}\nABCDEF012345\n")
    assert status == 0 and out == ""
    assert "mailcore queue: warning: invalid mail queue id: not-an-id" in err
    assert err.endswith("mailcore queue: Deleted: 2 messages\n")
    assert set(await snapshot(tmp_path)) == {ids[1]}


async def test_cli_hold_release_requeue_with_queue_and_all(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [INCOMING, DEFERRED, DEFERRED])
    status, _, err = await asyncio.to_thread(run, tmp_path, "hold", "ALL", "--queue",
                                             "deferred", "-v")
    assert status == 0
    assert err == (f"mailcore queue: {ids[1]}: placed on hold\n"
                   f"mailcore queue: {ids[2]}: placed on hold\n"
                   "mailcore queue: Placed on hold: 2 messages\n")
    _, _, err = await asyncio.to_thread(run, tmp_path, "release", ids[1], ids[0])
    assert err == "mailcore queue: Released from hold: 1 message\n"
    _, _, err = await asyncio.to_thread(run, tmp_path, "requeue", "ALL", ids[0])
    assert "will ignore other command line queue IDs" in err
    assert err.endswith("Requeued: 3 messages\n")
    states = {i: m.state for i, m in (await snapshot(tmp_path)).items()}
    assert states == dict.fromkeys(ids, INCOMING)
    status, _, err = await asyncio.to_thread(run, tmp_path, "release", "ABCDEF000000")
    assert status == 0 and err == ""  # nothing found: postsuper says nothing


async def test_cli_list_filters_and_json(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [INCOMING, DEFERRED, HOLD, DEFERRED])
    _, out, _ = await asyncio.to_thread(run, tmp_path, "list", "--json", "--domain",
                                        "D1.example")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["queue_id"], r["queue_name"]) for r in records] == [
        (ids[3], "deferred"), (ids[1], "deferred")] or \
        [(r["queue_id"], r["queue_name"]) for r in records] == [
        (ids[1], "deferred"), (ids[3], "deferred")]
    _, out, _ = await asyncio.to_thread(run, tmp_path, "list", "--queue", "hold,incoming",
                                        "--sender", "S2@x.example")
    assert out.splitlines()[1].startswith(f"{ids[2]}!") and out.endswith(" in 1 Request.\n")
    _, out, _ = await asyncio.to_thread(run, tmp_path, "list", "--recipient",
                                        "common@Z.example")
    assert out.endswith(" in 4 Requests.\n")
    _, out, _ = await asyncio.to_thread(run, tmp_path, "list", "--recipient", "x@nowhere")
    assert out == "Mail queue is empty\n"
    with pytest.raises(UsageError):
        run(tmp_path, "list", "--queue", "bogus")


async def test_cli_show_sections_and_missing(tmp_path: Path) -> None:
    ids = await fill(tmp_path, [DEFERRED])
    status, out, _ = await asyncio.to_thread(run, tmp_path, "show", ids[0])
    assert status == 0
    name = f"deferred/{ids[0]}"
    assert out.startswith(f"*** ENVELOPE RECORDS {name} ***\n")
    assert "named_attribute: dsn_envid=ENV\nnamed_attribute: dsn_ret=HDRS\n" in out
    assert ("original_recipient: o0@x.example\ndsn_orig_rcpt: rfc822;o0@x.example\n"
            "dsn_notify_flags: SUCCESS,FAILURE\nrecipient: r0@d0.example\n") in out
    assert out.endswith(f"*** MESSAGE CONTENTS {name} ***\n{BODY.decode()}"
                        f"*** MESSAGE FILE END {name} ***\n")
    _, out, _ = await asyncio.to_thread(run, tmp_path, "show", "--headers", ids[0])
    assert out == (f"*** MESSAGE CONTENTS {name} ***\nSubject: hi\nFrom: a@b.example\n"
                   f" folded\n*** MESSAGE FILE END {name} ***\n")
    status, out, err = await asyncio.to_thread(run, tmp_path, "show", "--body", "ABC0000000",
                                               ids[0])
    assert status == 66 and "ABC0000000: no such message in the queue" in err
    assert out == (f"*** MESSAGE CONTENTS {name} ***\n\nfirst body line\n"
                   f"Subject: not a header\n*** MESSAGE FILE END {name} ***\n")


async def test_cli_shape_and_flush_when_down(tmp_path: Path) -> None:
    await fill(tmp_path, [INCOMING, DEFERRED, DEFERRED])
    _, out, _ = await asyncio.to_thread(run, tmp_path, "shape", "deferred", "-b", "3")
    lines = out.splitlines()
    assert lines[0].split() == ["T", "5", "10", "10+"]
    assert lines[1].split() == ["TOTAL", "4", "0", "0", "4"]  # an hour old: last bucket
    assert lines[2].split() == ["z.example", "2", "0", "0", "2"]
    _, out, _ = await asyncio.to_thread(run, tmp_path, "shape", "-s", "all")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["TOTAL", "3"], ["x.example", "3"]]
    for argv in (["flush"], ["flush", "--site", "d0.example"], ["flush", "ABCDEF012345"]):
        status, _, err = await asyncio.to_thread(run, tmp_path, *argv)
        assert status == 69
        assert err == "mailcore queue: fatal: Cannot flush mail queue - mail system is down\n"


async def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    await fill(tmp_path, [DEFERRED] * 3)
    ns = cli.build_parser().parse_args(["queue", "hold", "ALL"])
    err = FakeTty()
    await asyncio.to_thread(run_queue, ns, lambda: config_for(tmp_path), send=no_server,
                            streams=Streams(io.StringIO(), err, io.StringIO()))
    assert "\rholding: 3/3 (100%)" in err.getvalue()
    assert err.getvalue().endswith("Placed on hold: 3 messages\n")
    _, _, plain = await asyncio.to_thread(run, tmp_path, "release", "ALL", tty=None)
    assert "\r" not in plain


def test_progress_line_redraws_throttles_and_clears() -> None:
    now = [0.0]
    stream = io.StringIO()
    with Progress(stream, "deleting", 200, tty=True, clock=lambda: now[0]) as progress:
        progress.update(10)
        progress.update(20)  # too soon: not drawn
        now[0] = 1.0
        progress.update(200)
    last = "deleting: 200/200 (100%)"
    assert stream.getvalue() == ("\rdeleting: 10/200 (5%)\r" + last
                                 + "\r" + " " * len(last) + "\r")
    quiet = io.StringIO()
    with Progress(FakeTty(), "x", tty=False) as off:
        off.update(5)
    with Progress(quiet, "listing") as unknown:  # a StringIO is not a terminal
        unknown.update(7)
    assert quiet.getvalue() == ""


def test_content_splitter_across_chunks() -> None:
    chunks = [BODY[:5], BODY[5:31], BODY[31:40], BODY[40:]]
    for headers, body in ((True, False), (False, True), (True, True)):
        splitter = ContentSplitter(headers, body)
        shown = b"".join(splitter.feed(c) for c in chunks) + splitter.end()
        head, _, rest = BODY.partition(b"\n\n")
        expected = (head + b"\n" if headers else b"") + (b"\n" + rest if body else b"")
        assert shown == expected


def test_envelope_layout_for_done_and_deferred_recipients() -> None:
    rcpts = (
        QueuedRecipient(0, "a@x", None, None, None, "sent", "2.0.0", "250 ok", "mx[1.2.3.4]:25",
                        True, False),
        QueuedRecipient(1, "b@y", None, None, None, "deferred", "4.4.1", "timed out", None,
                        False, False),
    )
    msg = QueuedMessage("ABCDEF012345", "deferred", "", rcpts, 10, 9, T, T + 60, None, None,
                        {}, T + 600, T + 60, 2, False)
    assert format_envelope(msg, localtime=time.gmtime) == (
        "*** ENVELOPE RECORDS deferred/ABCDEF012345 ***\n"
        "message_size:              10               9               2\n"
        "message_arrival_time: Sat May 19 04:16:20 2018\n"
        "create_time: Sat May 19 04:17:20 2018\n"
        "sender: \n"
        "done_recipient: a@x\n"
        "recipient_status: sent 2.0.0 relay=mx[1.2.3.4]:25 (250 ok)\n"
        "recipient: b@y\n"
        "recipient_status: deferred 4.4.1 (timed out)\n"
        "delivery_attempts: 2\n"
        "next_attempt_time: Sat May 19 04:26:20 2018\n"
    )
