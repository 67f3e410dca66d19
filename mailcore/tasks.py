"""Small structured-concurrency helpers shared by the servers (smtpd, control, metrics).

Must not: hold state; every function works on the tasks it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def finish_or_cancel(tasks: Collection[asyncio.Task[None]], grace: float) -> None:
    """Let ``tasks`` finish for ``grace`` seconds, then cancel the rest and wait for them,
    so no task outlives the server that started it."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
