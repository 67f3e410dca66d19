"""Shared pytest set-up: which event loops the integration tests run under.

The smtpd integration tests run under asyncio's default loop and under uvloop (aiosmtpd's
STARTTLS once broke under uvloop only); every other test runs under the default loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a declared dependency on POSIX
    uvloop = None  # type: ignore[assignment]

BOTH_LOOPS_PREFIX = "test_smtpd"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    path = item.path
    smtpd = path.parent.name == "integration" and path.name.startswith(BOTH_LOOPS_PREFIX)
    if smtpd and uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories
