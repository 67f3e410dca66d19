"""pipe(8) with real commands: the copy each flag makes, argv, environment, exit statuses,
the time limit, privileges, hostile senders — and content read from a real queue.

The commands are tiny sh scripts written into a scratch directory; the agent itself runs
them directly (no shell of its own). As root the agent runs them as user=nobody, so the
scratch directory belongs to that user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailcore.config import from_mapping
from mailcore.delivery.pipe import OUTPUT_LIMIT, PipeAgent
from mailcore.errors import ConfigError
from mailcore.model import BOUNCED, DEFERRED, SENT, DeliveryRequest, RecipientRef
from mailcore.queue import Queue
from mailcore.queue.types import NewMessage, NewRecipient

ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody")
MESSAGE = (b"Subject: test\nFrom: a@example.org\n\nFrom the start\n.dot line\n"
           b"Fromage\nlast line")


@pytest.fixture
def box() -> Iterator[Path]:
    """A scratch directory the command's user can write (nobody when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="mailcore-pipe-"))
    path.chmod(0o755)
    if ROOT:
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def script(box: Path, name: str, body: str) -> Path:
    path = box / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def content_of(data: bytes, chunk: int = 7):  # type: ignore[no-untyped-def]
    async def source(queue_id: str) -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start:start + chunk]
    return source


def agent(attributes: str, *, data: bytes = MESSAGE, settings: dict | None = None,
          name: str = "mypipe") -> PipeAgent:
    master = f"{name} unix - n n - - pipe\n  {attributes}\n"
    config = from_mapping(settings or {}, master_cf=master)
    return PipeAgent(config, config.master.get(name, "unix"), content_of(data),
                     clock=lambda: 1_700_000_000.0)


def request(*rcpts: RecipientRef, sender: str = "sender@example.org", size: int = 100,
            nexthop: str = "Example.COM") -> DeliveryRequest:
    rcpts = rcpts or (RecipientRef(1, "user+ext@example.com", orig_rcpt="alias@example.com"),)
    return DeliveryRequest(
        queue_id="3F2A1B", sender=sender, recipients=rcpts, transport="mypipe",
        nexthop=nexthop, size=size, arrival_time=0.0,
        attrs=(("client_address", "192.0.2.9"), ("client_name", "c.example"),
               ("helo_name", "helo.example"), ("protocol_name", "ESMTP")))


def only(result):  # type: ignore[no-untyped-def]
    statuses = {(r.status, r.dsn, r.reason, r.relay, r.action) for r in result.recipients}
    assert len(statuses) == 1, statuses
    return next(iter(statuses))


# --- the copy ------------------------------------------------------------------------------

async def test_plain_copy_is_unchanged_and_logs_relayed(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    result = await agent(f"user=nobody argv={cat}").deliver(request())
    assert only(result) == (SENT, "2.0.0", "delivered via mypipe service", "mypipe", "relayed")
    assert (box / "out").read_bytes() == MESSAGE + b"\n"  # incomplete last line gets its eol


async def test_all_copy_flags(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    result = await agent(f"flags=XFROD.>B user=nobody argv={cat}").deliver(request())
    assert only(result)[::4] == (SENT, "delivered")
    lines = (box / "out").read_bytes().split(b"\n")
    stamp = time.asctime(time.localtime(1_700_000_000.0)).encode()
    assert lines[:4] == [b"From sender@example.org  " + stamp,
                         b"Return-Path: <sender@example.org>",
                         b"X-Original-To: alias@example.com",
                         b"Delivered-To: user+ext@example.com"]
    assert lines[4:] == [b"Subject: test", b"From: a@example.org", b"", b">From the start",
                         b"..dot line", b"Fromage", b"last line", b"", b""]


async def test_eol_crlf(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    await agent(f"flags=R eol=\\r\\n user=nobody argv={cat}").deliver(request())
    data = (box / "out").read_bytes()
    assert data.startswith(b"Return-Path: <sender@example.org>\r\nSubject: test\r\n")
    assert data.endswith(b"last line\r\n") and b"\n" not in data.replace(b"\r\n", b"")


async def test_null_sender_in_headers(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    await agent(f"flags=R user=nobody argv={cat}").deliver(request(sender=""))
    assert (box / "out").read_bytes().startswith(b"Return-Path: <MAILER-DAEMON>\n")
    await agent(f"flags=R null_sender= user=nobody argv={cat}").deliver(request(sender=""))
    assert (box / "out").read_bytes().startswith(b"Return-Path: <>\n")


async def test_flag_d_loop_and_recipient_limit(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    looped = b"Delivered-To: User+Ext@example.com\nSubject: x\n\nbody\n"
    result = await agent(f"flags=D user=nobody argv={cat}", data=looped).deliver(request())
    assert only(result)[:3] == (BOUNCED, "5.4.6",
                                "mail forwarding loop for user+ext@example.com")
    two = request(RecipientRef(1, "a@x"), RecipientRef(2, "b@x"))
    for flags in ("D", "O"):
        result = await agent(f"flags={flags} user=nobody argv={cat}").deliver(two)
        assert only(result)[:3] == (DEFERRED, "4.3.5", "mail system configuration error")
    assert not (box / "out").exists()


async def test_size_limit_refuses_before_running(box: Path) -> None:
    cat = script(box, "cat", f'cat > "{box}/out"')
    result = await agent(f"size=99 user=nobody argv={cat}").deliver(request(size=100))
    assert only(result)[:3] == (BOUNCED, "5.2.3", "message too large")
    assert not (box / "out").exists()
    result = await agent(f"size=100 user=nobody argv={cat}").deliver(request(size=100))
    assert only(result)[0] == SENT and (box / "out").exists()


# --- argv and environment ------------------------------------------------------------------

async def test_argv_macros_and_per_recipient_arguments(box: Path) -> None:
    args = script(box, "args", f"printf '%s\\n' \"$@\" > \"{box}/out\"")
    a = agent(f"flags=h user=nobody argv={args} -f ${{sender}} n=$nexthop -- ${{recipient}} "
              "u=$user e=${extension} d=$(domain) m=$mailbox o=${original_recipient} "
              "q=$queue_id s=$size c=$client_address h=$client_hostname "
              "helo=$client_helo p=$client_protocol $$literal",
              settings={"recipient_delimiter": "+"})
    two = request(RecipientRef(1, "a+x@One.Example", orig_rcpt="oa@o"),
                  RecipientRef(2, "b@Two.Example"), size=4321)
    assert only(await a.deliver(two))[0] == SENT
    assert (box / "out").read_text().splitlines() == [
        "-f", "sender@example.org", "n=example.com", "--", "a+x@one.example", "b@two.example",
        "u=a", "u=b", "e=x", "e=", "d=one.example", "d=two.example", "m=a+x", "m=b",
        "o=oa@o", "o=", "q=3F2A1B", "s=4321", "c=192.0.2.9", "h=c.example",
        "helo=helo.example", "p=ESMTP", "$literal"]


@pytest.mark.parametrize("sender", ['"x;touch pwn"@ext', '"$(id)"@ext', '"`id`;|sh"@ext'])
async def test_hostile_senders_are_inert_arguments(box: Path, sender: str) -> None:
    args = script(box, "args", f"printf '%s\\n' \"$@\" > \"{box}/out\"")
    for flags in ("", "q"):
        a = agent(f"flags={flags} directory={box} user=nobody argv={args} $sender $recipient")
        hostile = request(RecipientRef(1, '"|touch pwn2"@local'), sender=sender)
        assert only(await a.deliver(hostile))[0] == SENT
        got = (box / "out").read_text().splitlines()
        unquoted = sender.replace('"', "")
        assert got == ([sender, '"|touch pwn2"@local'] if flags
                       else [unquoted, "|touch pwn2@local"])
    assert sorted(p.name for p in box.iterdir()) == ["args", "out"]  # no pwn, no pwn2
    assert not Path("pwn").exists()


async def test_environment_is_filtered(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("PATH", "/tmp/evil:/usr/bin")
    env = script(box, "env", f'/usr/bin/env > "{box}/out"')
    a = agent(f"user=nobody argv={env}",
              settings={"export_environment": "TZ LANG FOO=bar"})
    assert only(await a.deliver(request()))[0] == SENT
    seen = dict(line.split("=", 1) for line in (box / "out").read_text().splitlines())
    assert seen["TZ"] == "Europe/Paris" and seen["FOO"] == "bar"
    assert seen["PATH"] == "/usr/bin:/bin"
    assert "SECRET_TOKEN" not in seen and "SENDER" not in seen and "RECIPIENT" not in seen


async def test_directory_and_user(box: Path) -> None:
    who = script(box, "who", f'pwd > "{box}/out"; id -u >> "{box}/out"; id -g >> "{box}/out"')
    assert only(await agent(f"directory={box} user=nobody argv={who}").deliver(request()))[0] \
        == SENT
    cwd, uid, gid = (box / "out").read_text().split()
    assert cwd == str(box)
    expected = (NOBODY.pw_uid, NOBODY.pw_gid) if ROOT else (os.getuid(), os.getgid())
    assert (int(uid), int(gid)) == expected


# --- exit statuses -------------------------------------------------------------------------

@pytest.mark.parametrize("body, outcome", [
    ("echo busy; exit 75", (DEFERRED, "4.3.0", "temporary failure. Command output: busy")),
    ("exit 67", (BOUNCED, "5.1.1", "user unknown")),
    ("echo nope >&2; exit 77", (BOUNCED, "5.7.0", "permission denied. Command output: nope")),
    ("exit 71", (DEFERRED, "4.3.0", "system resource problem")),
    ("echo oops; exit 1", (BOUNCED, "5.3.0", 'Command died with status 1: "{cmd}". '
                                             "Command output: oops")),
    ("echo 4.2.2 mailbox full; exit 1", (DEFERRED, "4.2.2", "mailbox full")),
    ("echo 5.1.1 no such user; exit 75", (BOUNCED, "5.1.1", "no such user")),
    ("kill -TERM $$", (DEFERRED, "4.3.0", 'Command died with signal 15: "{cmd}"')),
    ("echo all fine; exit 0", (SENT, "2.0.0", "delivered via mypipe service (all fine)")),
])
async def test_exit_status(box: Path, body: str, outcome: tuple[str, str, str]) -> None:
    cmd = script(box, "cmd", "cat > /dev/null; " + body)
    status, dsn, reason = outcome
    got = only(await agent(f"user=nobody argv={cmd}").deliver(request()))
    assert got[:3] == (status, dsn, reason.format(cmd=cmd))


async def test_missing_command_defers(box: Path) -> None:
    got = only(await agent(f"user=nobody argv={box}/absent").deliver(request()))
    assert got[:2] == (DEFERRED, "4.3.0")
    assert got[2].startswith("temporary failure. Command output:") and "absent" in got[2]


async def test_command_that_does_not_read_its_input(box: Path) -> None:
    quick = script(box, "quick", "exit 0")
    big = b"Subject: big\n\n" + b"x" * 1000 + b"\n"
    a = agent(f"user=nobody argv={quick}", data=big * 2000)
    assert only(await a.deliver(request()))[0] == SENT


async def test_output_is_bounded(box: Path) -> None:
    loud = script(box, "loud", "cat > /dev/null; head -c 3000000 /dev/zero | tr '\\0' 'y'; "
                  "exit 1")
    got = only(await agent(f"user=nobody argv={loud}").deliver(request()))
    assert got[:2] == (BOUNCED, "5.3.0")
    assert got[2].count("y") <= OUTPUT_LIMIT and len(got[2]) <= 1003


async def test_time_limit_kills_the_process_group(box: Path) -> None:
    slow = script(box, "slow", f'sleep 60 & echo $! > "{box}/child"; echo started; wait')
    a = agent(f"user=nobody argv={slow}", settings={"mypipe_time_limit": "1s"})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        beat = group.create_task(ticker())
        result = await a.deliver(request())
        beat.cancel()
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5
    assert ticks >= 10  # the loop kept running while the command did
    assert only(result)[:3] == (DEFERRED, "4.3.0",
                                f'Command time limit exceeded: "{slow}". '
                                "Command output: started")
    child = int((box / "child").read_text())
    for _ in range(100):  # the killed background child is reaped by init shortly after
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        await asyncio.sleep(0.02)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return re.sub(r"^.*\) ", "", text)[:1]


async def test_offspring_outside_the_group_cannot_stall_the_agent(box: Path) -> None:
    # setsid puts the sleeper in a session of its own, out of reach of the group kill, while
    # it keeps the command's output pipe open: the delivery still ends at the time limit.
    escape = script(box, "escape", f'setsid sleep 30 & echo $! > "{box}/child"; exit 0')
    a = agent(f"user=nobody argv={escape}", settings={"mypipe_time_limit": "1"})
    started = time.monotonic()
    try:
        result = await a.deliver(request())
    finally:
        for _ in range(100):
            if (box / "child").exists() and (box / "child").read_text().strip():
                os.kill(int((box / "child").read_text()), 9)
                break
            await asyncio.sleep(0.01)
    assert time.monotonic() - started < 5
    assert only(result)[:3] == (DEFERRED, "4.3.0", f'Command time limit exceeded: "{escape}"')


async def test_cancelled_delivery_kills_the_command(box: Path) -> None:
    slow = script(box, "slow", f'echo $$ > "{box}/pid"; exec sleep 60')
    task = asyncio.create_task(agent(f"user=nobody argv={slow}").deliver(request()))
    for _ in range(200):
        if (box / "pid").exists() and (box / "pid").read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int((box / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()


def test_under_uvloop(box: Path) -> None:
    """uvloop takes no user=/group= for subprocesses; the agent must still switch users."""
    uvloop = pytest.importorskip("uvloop")
    who = script(box, "who", f'cat > /dev/null; id -u > "{box}/uid"; exit "$1"')
    slow = script(box, "slow", "sleep 30")

    async def scenario() -> list[tuple]:
        ok = await agent(f"user=nobody argv={who} 0").deliver(request())
        temp = await agent(f"user=nobody argv={who} 75").deliver(request())
        late = await agent(f"user=nobody argv={slow}",
                           settings={"mypipe_time_limit": "1"}).deliver(request())
        absent = await agent(f"user=nobody argv={box}/absent").deliver(request())
        return [only(r)[:2] for r in (ok, temp, late, absent)]

    assert uvloop.run(scenario()) == [(SENT, "2.0.0"), (DEFERRED, "4.3.0"),
                                      (DEFERRED, "4.3.0"), (DEFERRED, "4.3.0")]
    assert int((box / "uid").read_text()) == (NOBODY.pw_uid if ROOT else os.getuid())


def test_bad_macro_refused_at_start() -> None:
    with pytest.raises(ConfigError) as caught:
        agent("user=nobody argv=/bin/cat ${recipent}")
    assert 'unknown macro name "recipent"' in caught.value.message
    assert caught.value.line == 1


# --- content from the queue ----------------------------------------------------------------

async def test_delivery_reads_content_from_the_queue(box: Path, tmp_path: Path) -> None:
    body = b"Subject: queued\n\n" + b"".join(b"line %d\n" % n for n in range(5000))
    queue = await Queue.open(tmp_path / "queue")
    try:
        queue_id = await queue.enqueue(NewMessage(
            sender='"$(id)"@ext', recipients=(NewRecipient("a@x"), NewRecipient("b@x")),
            content_path=None, content=body, size=len(body), arrival_time=time.time()))
        cat = script(box, "cat", f'cat > "{box}/out"; printf "%s\\n" "$@" > "{box}/args"')
        config = from_mapping({}, master_cf=f"q unix - n n - - pipe\n  flags=R user=nobody "
                                            f"argv={cat} $sender $recipient\n")
        pipe = PipeAgent(config, config.master.get("q", "unix"), queue.read_content)
        result = await pipe.deliver(DeliveryRequest(
            queue_id=queue_id, sender='"$(id)"@ext',
            recipients=(RecipientRef(1, "a@x"), RecipientRef(2, "b@x")), transport="q",
            nexthop="x", size=len(body), arrival_time=0.0))
    finally:
        await queue.close()
    assert [r.seq for r in result.recipients] == [1, 2]
    assert only(result)[0] == SENT
    assert (box / "out").read_bytes() == b"Return-Path: <\"$(id)\"@ext>\n" + body
    assert (box / "args").read_text().splitlines() == ["$(id)@ext", "a@x", "b@x"]
