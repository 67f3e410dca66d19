"""Shared pytest set-up: which event loops the integration tests run under.

Every async integration test runs under asyncio's default loop and under uvloop (aiosmtpd's
STARTTLS once broke under uvloop only, and `mailcore serve` picks uvloop); unit tests run
under the default loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a declared dependency on POSIX
    uvloop = None  # type: ignore[assignment]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    if item.path.parent.name == "integration" and uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories
