"""The control channel without sockets: request dispatch, argument checking, answers, and
the checks on the socket's directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailcore.control import (
    QUEUE_OPS,
    ControlError,
    _result,
    answer,
    encode,
    handlers,
    secure_socket_path,
)
from mailcore.errors import MailcoreError


@dataclass(frozen=True)
class Changed:
    changed: list[str]
    missing: list[str]


class FakeScheduler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def wakeup(self) -> None:
        self.calls.append(("wakeup", None))

    def flush(self) -> None:
        self.calls.append(("flush", None))

    async def flush_site(self, site: str) -> int:
        self.calls.append(("flush_site", site))
        return 3

    async def flush_id(self, queue_id: str) -> bool:
        self.calls.append(("flush_id", queue_id))
        return queue_id == "ABC"

    async def delete(self, ids: list[str] | str, queue: str | None = None) -> Changed:
        self.calls.append(("delete", (ids, queue)))
        return Changed(changed=["A1"], missing=["B2"])

    async def hold(self, ids: list[str] | str, queue: str | None = None) -> dict[str, list[str]]:
        self.calls.append(("hold", (ids, queue)))
        return {"changed": [], "missing": []}

    async def release(self, ids: list[str] | str) -> dict[str, list[str]]:
        self.calls.append(("release", ids))
        return {"changed": list(ids), "missing": []}

    async def requeue(self, ids: list[str] | str, queue: str | None = None) -> dict:
        self.calls.append(("requeue", (ids, queue)))
        return {"changed": ["Z"], "missing": []}


class FakeSystem:
    def __init__(self) -> None:
        self.qmgr: FakeScheduler | None = FakeScheduler()
        self.stopped = False
        self.reloads = 0
        self.reload_error: str | None = None

    async def status(self) -> dict[str, object]:
        return {"pid": 42, "uptime": 1.5, "listeners": [["127.0.0.1", 25]], "queue": {},
                "version": "x", "config_directory": "/etc/mailcore"}

    async def reload(self) -> None:
        self.reloads += 1
        if self.reload_error:
            raise MailcoreError(self.reload_error)

    def request_stop(self) -> None:
        self.stopped = True


async def ask(system: FakeSystem, op: str, **args: object) -> dict[str, object]:
    reply = await answer(handlers(system), encode({"op": op, "args": args}))
    # What goes over the wire must survive JSON.
    return json.loads(encode(reply))


async def test_status_is_the_systems_status():
    reply = await ask(FakeSystem(), "status")
    assert reply == {"ok": True, "result": {
        "pid": 42, "uptime": 1.5, "listeners": [["127.0.0.1", 25]], "queue": {},
        "version": "x", "config_directory": "/etc/mailcore"}}


async def test_stop_and_reload_reach_the_system():
    system = FakeSystem()
    assert (await ask(system, "stop"))["ok"] and system.stopped
    assert (await ask(system, "reload"))["ok"] and system.reloads == 1


async def test_a_refused_reload_answers_with_its_error_text():
    system = FakeSystem()
    system.reload_error = "/etc/mailcore/main.cf, line 3: bad value"
    assert await ask(system, "reload") == {
        "ok": False, "error": "/etc/mailcore/main.cf, line 3: bad value"}


async def test_flush_operations_call_the_scheduler():
    system = FakeSystem()
    assert system.qmgr is not None
    assert (await ask(system, "flush"))["ok"]
    assert (await ask(system, "wakeup"))["ok"]
    assert (await ask(system, "flush_site", site="example.com"))["result"] == 3
    assert (await ask(system, "flush_id", queue_id="ABC"))["result"] is True
    assert (await ask(system, "flush_id", queue_id="NOPE"))["result"] is False
    assert system.qmgr.calls == [("flush", None), ("wakeup", None),
                                 ("flush_site", "example.com"), ("flush_id", "ABC"),
                                 ("flush_id", "NOPE")]


@pytest.mark.parametrize("op,method", sorted(QUEUE_OPS.items()))
async def test_queue_operations_map_to_scheduler_methods(op: str, method: str):
    system = FakeSystem()
    assert system.qmgr is not None
    args: dict[str, object] = {"ids": ["A1", "B2"],
                               "queue": None if method == "release" else "deferred"}
    reply = await ask(system, op, **args)
    assert reply["ok"], reply
    assert system.qmgr.calls[0][0] == method
    assert reply["result"]["changed"] is not None  # type: ignore[index]


async def test_a_dataclass_result_travels_as_an_object():
    reply = await ask(FakeSystem(), "queue_delete", ids="ALL", queue=None)
    assert reply["result"] == {"changed": ["A1"], "missing": ["B2"]}


async def test_arguments_a_method_does_not_take_are_refused_before_the_call():
    system = FakeSystem()
    assert system.qmgr is not None
    reply = await ask(system, "flush_site", domain="example.com")
    assert reply["ok"] is False and "bad arguments" in str(reply["error"])
    reply = await ask(system, "queue_release", ids=["A"], queue="hold")
    assert reply["ok"] is False
    assert system.qmgr.calls == []


async def test_a_null_argument_the_method_lacks_is_left_out():
    system = FakeSystem()
    assert system.qmgr is not None
    reply = await ask(system, "queue_release", ids=["A"], queue=None)
    assert reply == {"ok": True, "result": {"changed": ["A"], "missing": []}}


@pytest.mark.parametrize("line,expected", [
    (b"not json\n", "malformed request"),
    (b"[1, 2]\n", "malformed request"),
    (b'{"args": {}}\n', "malformed request"),
    (b'{"op": "status", "args": [1]}\n', "args must be an object"),
    (b'{"op": "format_disk"}\n', "unknown operation: format_disk"),
    (b"\xff\xfe\n", "malformed request"),
])
async def test_malformed_requests_get_an_error_answer(line: bytes, expected: str):
    reply = await answer(handlers(FakeSystem()), line)
    assert reply["ok"] is False and expected in str(reply["error"])


async def test_without_a_scheduler_flush_is_refused():
    system = FakeSystem()
    system.qmgr = None
    reply = await ask(system, "flush")
    assert reply == {"ok": False, "error": "the queue manager is not running"}


async def test_an_unexpected_failure_still_answers():
    system = FakeSystem()

    async def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    system.status = broken  # type: ignore[method-assign]
    reply = await ask(system, "status")
    assert reply["ok"] is False and "boom" in str(reply["error"])


def test_client_reads_results_and_errors():
    assert _result(b'{"ok": true, "result": {"pid": 1}}\n') == {"pid": 1}
    assert _result(b'{"ok": true}\n') is None
    with pytest.raises(ControlError, match="nope"):
        _result(b'{"ok": false, "error": "nope"}\n')
    for bad in (b"", b"garbage\n", b'{"result": 1}\n'):
        with pytest.raises(ControlError):
            _result(bad)


def test_missing_directory_is_created_private(tmp_path: Path):
    path = tmp_path / "run" / "control"
    secure_socket_path(path)
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_a_directory_others_can_write_is_refused(tmp_path: Path):
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.raises(MailcoreError, match="writable by group or others"):
        secure_socket_path(directory / "control")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a directory by another uid")
def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path):
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(MailcoreError, match="not by this user"):
        secure_socket_path(directory / "control")


def test_a_directory_owned_by_someone_else_is_refused_without_root(tmp_path: Path):
    # /  is root's: an ordinary user is refused there; root is refused for its mode below.
    if os.geteuid() == 0:
        pytest.skip("root owns /")
    with pytest.raises(MailcoreError, match="not by this user"):
        secure_socket_path(Path("/control-test-never-created"))


def test_an_existing_file_that_is_not_a_socket_is_left_alone(tmp_path: Path):
    path = tmp_path / "control"
    path.write_text("precious")
    with pytest.raises(MailcoreError, match="not a socket"):
        secure_socket_path(path)
    assert path.read_text() == "precious"


def test_a_path_too_long_for_a_unix_socket_is_refused(tmp_path: Path):
    with pytest.raises(MailcoreError, match="longer than"):
        secure_socket_path(tmp_path / ("x" * 120) / "control")
