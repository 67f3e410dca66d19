"""SIGKILL during enqueueing: every ID reported as committed survives, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mailcore.queue import Queue

# The child enqueues from several concurrent "sessions" (so group commit is in play) and
# prints each ID only after enqueue() has returned, i.e. after COMMIT.
CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from mailcore.queue import NewMessage, NewRecipient, Queue

async def session(queue, n):
    for i in range(100_000):
        body = (b"session %d message %d\r\n" % (n, i)) * 50
        msg = NewMessage(sender="a@example.com", recipients=(NewRecipient("b@example.net"),),
                         content_path=None, content=body, size=len(body),
                         arrival_time=time.time(), envid=None, ret=None, attrs={})
        queue_id = await queue.enqueue(msg)
        sys.stdout.write(f"{queue_id} {n} {i}\n")
        sys.stdout.flush()

async def main():
    queue = await Queue.open(Path(sys.argv[1]))
    print("READY", flush=True)
    await asyncio.gather(*(session(queue, n) for n in range(8)))

asyncio.run(main())
"""


async def test_sigkill_loses_no_committed_message(tmp_path: Path) -> None:
    directory = tmp_path / "q"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)], stdout=subprocess.PIPE, env=env, cwd=repo
    ) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline() == b"READY\n"
            deadline = time.monotonic() + 1.5
            lines: list[bytes] = []
            while time.monotonic() < deadline:
                lines.append(child.stdout.readline())
            child.send_signal(signal.SIGKILL)
            rest = child.stdout.read()
        finally:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    committed = [
        line.split() for line in (*lines, *rest.splitlines(keepends=True)) if line.endswith(b"\n")
    ]
    assert len(committed) > 50, "the child enqueued too little to test anything"
    queue = await Queue.open(directory)
    try:
        assert queue.recovery is not None and queue.recovery.corrupted == 0
        for queue_id, n, i in committed:
            message = await queue.get(queue_id.decode())
            assert message is not None, queue_id
            content = b"".join([c async for c in queue.read_content(queue_id.decode())])
            assert content == (b"session %s message %s\r\n" % (n, i)) * 50
        ids = [m.queue_id async for m in queue.iter_messages()]
        assert len(ids) == len(set(ids))
        assert {q.decode() for q, _, _ in committed} <= set(ids)
        assert len(committed) == len({q for q, _, _ in committed})
    finally:
        await queue.close()
