"""Queue ID allocation and the queue_minfree free-space rule."""

from __future__ import annotations

from pathlib import Path

from mailcore.queue import free_space_ok, minfree_warning, space_ok
from mailcore.queueid import QueueIdAllocator, format_queue_id, is_queue_id


def test_ids_unique_with_a_frozen_clock() -> None:
    allocator = QueueIdAllocator(clock_ns=lambda: 1_700_000_000_000_000_000)
    ids = [allocator.allocate() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(len(i) == 12 and is_queue_id(i) for i in ids)


def test_ids_keep_increasing_when_the_clock_steps_back() -> None:
    times = iter([2_000_000_000_000, 1_000_000_000_000, 1_000_000_000_000, 3_000_000_000_000])
    allocator = QueueIdAllocator(clock_ns=lambda: next(times))
    ids = [allocator.allocate() for _ in range(4)]
    assert len(set(ids)) == 4
    assert ids == sorted(ids)


def test_id_format() -> None:
    assert format_queue_id(0) == "000000000000"
    # 1 second and 15 microseconds: seven hex digits of seconds, five of microseconds.
    assert format_queue_id(1_000_015) == "00000010000F"
    assert format_queue_id((1 << 28) * 1_000_000 + 5) == "000000000005"  # seconds wrap
    assert not is_queue_id("abcdef123456")  # lower case
    assert not is_queue_id("ABC")
    assert not is_queue_id("ABCDEF1234567")
    assert is_queue_id("3F1A2B4C5D")


def test_space_rule_follows_postfix() -> None:
    block = 4096
    # Plenty of room, no queue_minfree.
    assert space_ok(block, 1000, 0, 10 * block)
    # Message would take half the free space or more.
    assert not space_ok(block, 1000, 0, 500 * block)
    assert space_ok(block, 1000, 0, 499 * block)
    # queue_minfree at or above the free space refuses everything.
    assert not space_ok(block, 1000, 1000 * block, 0)
    assert space_ok(block, 1000, 999 * block, 0)
    # Message would eat into queue_minfree.
    assert not space_ok(block, 1000, 800 * block, 200 * block)
    assert space_ok(block, 1000, 800 * block, 199 * block)
    assert not space_ok(0, 1000, 0, 0)


def test_minfree_warning() -> None:
    assert minfree_warning(0, 10_240_000) is None
    assert minfree_warning(15_360_000, 10_240_000) is None
    warning = minfree_warning(15_000_000, 10_240_000)
    assert warning is not None and "1.5*message_size_limit" in warning
    assert minfree_warning(100, 0) is None


async def test_free_space_ok_on_a_real_directory(tmp_path: Path) -> None:
    assert await free_space_ok(tmp_path, 0, 0)
    assert not await free_space_ok(tmp_path, 1 << 62, 0)
