"""The maildrop file format: round trip, atomic appearance, damage detection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailcore import maildrop
from mailcore.maildrop import DropEnvelope, DropRecipient, MaildropCorrupt, MaildropWriter

ENV = DropEnvelope(
    sender="a@example.com",
    recipients=(DropRecipient("b@example.com", "b@example.com", "SUCCESS"), DropRecipient("c")),
    arrival_time=1700000000.5, uid=1000, full_name="Ann \u00c9\nX", envid="e1", ret="FULL",
    body_type="8BITMIME", rewrite_context="local", flags=("extract",),
)


def _write(directory: Path, lines: list[bytes], env: DropEnvelope = ENV) -> Path:
    writer = MaildropWriter(directory)
    for line in lines:
        writer.write_line(line)
    return directory / writer.commit(env)


def test_round_trip(tmp_path: Path) -> None:
    lines = [b"Subject: t", b"", b"\xff binary \x00 line", b"x" * 300_000, b""]
    path = _write(tmp_path, lines)
    drop = maildrop.open_drop(path)
    assert drop.envelope == ENV
    assert drop.owner_uid == os.getuid()
    assert list(maildrop.read_all_lines(drop)) == lines
    assert drop.content_size == sum(len(x) + 1 for x in lines)


def test_nothing_visible_before_commit_and_abort_cleans(tmp_path: Path) -> None:
    writer = MaildropWriter(tmp_path)
    writer.write_line(b"Subject: half")
    assert maildrop.oldest(tmp_path, 10) == []
    assert [p.name.startswith(".") for p in tmp_path.iterdir()] == [True]
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_names_never_collide(tmp_path: Path) -> None:
    paths = {_write(tmp_path, [b"x"]) for _ in range(20)}
    assert len(paths) == 20 and all(maildrop.is_drop_name(p.name) for p in paths)
    assert set(maildrop.oldest(tmp_path, 100)) == paths
    assert len(maildrop.oldest(tmp_path, 5)) == 5


def test_oldest_first(tmp_path: Path) -> None:
    first, second = _write(tmp_path, [b"1"]), _write(tmp_path, [b"2"])
    os.utime(second, (1000, 1000))
    os.utime(first, (2000, 2000))
    assert maildrop.oldest(tmp_path, 10) == [second, first]


def _damage(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"hello"])
    os.truncate(path, path.stat().st_size - 3)
    with pytest.raises(MaildropCorrupt):
        maildrop.open_drop(path)


def test_flipped_content_byte_fails_checksum(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"hello world"])
    _damage(path, 117 + 2, b"X")
    drop = maildrop.open_drop(path)
    with pytest.raises(MaildropCorrupt, match="checksum"):
        list(maildrop.read_all_lines(drop))


@pytest.mark.parametrize("garbage", [b"NOT-A-MAILDROP", b"MAILCORE-MAILDROP 9"])
def test_bad_header(tmp_path: Path, garbage: bytes) -> None:
    path = _write(tmp_path, [b"hello"])
    _damage(path, 0, garbage)
    with pytest.raises(MaildropCorrupt):
        maildrop.open_drop(path)


@pytest.mark.parametrize("envelope", [
    b"[]", b"{}", b'{"sender": 1}', b"\xff\xfe",
    b'{"sender":"","recipients":[],"arrival_time":1,"uid":0,"full_name":"","envid":null,'
    b'"ret":null,"body_type":"","rewrite_context":"local","flags":[]}',
])
def test_bad_envelope(envelope: bytes) -> None:
    with pytest.raises(MaildropCorrupt):
        maildrop.decode_envelope(envelope)


def test_move_corrupt_keeps_both(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"x"])
    target = maildrop.move_corrupt(path)
    assert target.parent.name == "corrupt" and not path.exists()
    path.write_bytes(b"again")
    second = maildrop.move_corrupt(path)
    assert second != target and second.read_bytes() == b"again"


def test_stale_temp_files(tmp_path: Path) -> None:
    writer = MaildropWriter(tmp_path)
    os.utime(writer.temp_path, (1000, 1000))
    assert maildrop.stale_temp_files(tmp_path, 3600, 1000 + 7200) == [writer.temp_path]
    assert maildrop.stale_temp_files(tmp_path, 3600, 1000 + 60) == []
    writer.abort()
