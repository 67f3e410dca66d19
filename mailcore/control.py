"""The control channel: how the command-line tools talk to a running server.

Owns: the unix socket at main.cf's ``control_socket`` (mailcore's own parameter, default
``$queue_directory/control``) — securing its directory, replacing a stale socket, refusing to
start when another server answers on it — the one-line JSON protocol, the dispatch of each
operation to the running system, and the client (``request``, ``request_sync``).

Protocol: one request per connection. The client writes one line
``{"op": NAME, "args": {...}}``; the server answers one line ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": TEXT}`` and closes.

Must not: contain what an operation does (the system's methods do that) or import mailcore.app.

Invariants: the socket is mode 0600 in a directory that belongs to the server's user and that
nobody else can write; only that user (or root) is answered; every connection task is
tracked and cancelled by ``close``; the socket is removed on close only if it is still ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from mailcore.errors import MailcoreError
from mailcore.tasks import finish_or_cancel

MAX_LINE = 16 * 1024 * 1024  # a queue operation may name many queue IDs
READ_TIMEOUT = 30.0  # how long a connected client may take to send its request
CLOSE_GRACE = 2.0  # how long close() lets requests being answered finish
SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus its terminating NUL (Linux)

Args = Mapping[str, Any]
Handler = Callable[[Args], Awaitable[object]]

QUEUE_OPS: Mapping[str, str] = {
    # op -> QueueManager method (postsuper -d / -h / -H / -r); args passed as keywords.
    "queue_delete": "delete",
    "queue_hold": "hold",
    "queue_release": "release",
    "queue_requeue": "requeue",
}


class ServerNotRunning(MailcoreError):
    """Nothing listens on the control socket (missing, or connection refused)."""


class ControlError(MailcoreError):
    """The server refused the request, or its answer could not be read."""


# --- the operations ------------------------------------------------------------------------
class Controlled(Protocol):
    """What the control channel needs from the running mail system (mailcore.app)."""

    qmgr: Any

    async def status(self) -> dict[str, object]: ...

    async def reload(self) -> None: ...

    def request_stop(self) -> None: ...


def handlers(system: Controlled) -> dict[str, Handler]:
    """Every operation the server answers, bound to ``system``."""

    def scheduler() -> Any:
        if system.qmgr is None:
            raise ControlError("the queue manager is not running")
        return system.qmgr

    async def status(args: Args) -> object:
        return await system.status()

    async def reload(args: Args) -> object:
        await system.reload()
        return None

    async def stop(args: Args) -> object:
        system.request_stop()
        return None

    async def wakeup(args: Args) -> object:
        scheduler().wakeup()
        return None

    async def flush(args: Args) -> object:
        scheduler().flush()
        return None

    async def flush_site(args: Args) -> object:
        return await call(scheduler().flush_site, args)

    async def flush_id(args: Args) -> object:
        return await call(scheduler().flush_id, args)

    table: dict[str, Handler] = {
        "status": status, "reload": reload, "stop": stop, "wakeup": wakeup, "flush": flush,
        "flush_site": flush_site, "flush_id": flush_id,
    }
    for op, method in QUEUE_OPS.items():
        table[op] = _queue_op(scheduler, method)
    return table


def _queue_op(scheduler: Callable[[], Any], method: str) -> Handler:
    async def run(args: Args) -> object:
        target = getattr(scheduler(), method, None)
        if target is None:
            raise ControlError(f"this server does not support {method}")
        return await call(target, args)
    return run


async def call(method: Callable[..., Any], args: Args) -> object:
    """``method(**args)``, refusing arguments it does not take before calling it; a null
    argument the method has no parameter for is left out (a client may send every key)."""
    params = inspect.signature(method).parameters
    args = {k: v for k, v in args.items() if v is not None or k in params}
    try:
        inspect.signature(method).bind(**args)
    except TypeError as exc:
        raise ControlError(f"bad arguments: {exc}") from None
    result = method(**args)
    return await result if inspect.isawaitable(result) else result


async def answer(table: Mapping[str, Handler], line: bytes) -> dict[str, object]:
    """The answer to one request line (the whole protocol, without sockets)."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return {"ok": False, "error": "malformed request: not a JSON line"}
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        return {"ok": False, "error": "malformed request: expected {\"op\": NAME, \"args\": {}}"}
    args = request.get("args") or {}
    if not isinstance(args, dict):
        return {"ok": False, "error": "malformed request: args must be an object"}
    handler = table.get(request["op"])
    if handler is None:
        return {"ok": False, "error": f"unknown operation: {request['op']}"}
    try:
        return {"ok": True, "result": await handler(args)}
    except MailcoreError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a bug must not leave the tool without an answer
        return {"ok": False, "error": f"internal error: {exc!r}"}


def encode(message: Mapping[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=_plain).encode() + b"\n"


def _plain(value: object) -> object:
    """JSON for the results operations return: dataclasses as objects, sets as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- the server ----------------------------------------------------------------------------
def secure_socket_path(path: Path) -> None:
    """Make ``path`` ready for a new socket, or raise MailcoreError saying why it cannot be.

    The directory is created 0700 if missing; an existing one must belong to this user and
    be writable by nobody else (or anyone could replace the socket). A leftover socket that
    refuses connections is removed; one that answers means a server is already running."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise MailcoreError(f"control_socket: path is longer than {SUN_PATH_MAX} bytes: {path}")
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    info = directory.stat()
    if info.st_uid != os.geteuid():
        raise MailcoreError(f"control_socket: directory {directory} is owned by uid "
                            f"{info.st_uid}, not by this user (uid {os.geteuid()}); refusing "
                            "to create the control socket there")
    if info.st_mode & 0o022:
        raise MailcoreError(f"control_socket: directory {directory} is writable by group or "
                            f"others (mode {stat.S_IMODE(info.st_mode):04o}); refusing to "
                            "create the control socket there")
    try:
        existing = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(existing.st_mode):
        raise MailcoreError(f"control_socket: {path} exists and is not a socket")
    if _answers(path):
        raise MailcoreError(f"the mail system is already running (control socket {path})")
    path.unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(os.fsencode(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # e.g. a timeout: something holds it; do not take it away
        return True


def _peer_uid(sock: socket.socket | None) -> int | None:
    """The connecting process's uid where the system says (Linux SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", creds)[1]


class ControlServer:
    """``await ControlServer(path, table, log_warning).start()``; always ``await close()``."""

    def __init__(self, path: Path, table: Mapping[str, Handler],
                 warn: Callable[[str], None]) -> None:
        self.path = path
        self._table = table
        self._warn = warn
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.to_thread(secure_socket_path, self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fsencode(self.path))
            os.chmod(self.path, 0o600)
            info = os.lstat(self.path)
            self._inode = (info.st_dev, info.st_ino)
            self._server = await asyncio.start_unix_server(self._connection, sock=sock,
                                                           limit=MAX_LINE)
        except BaseException:
            sock.close()
            self._remove()
            raise

    async def close(self) -> None:
        """Stop accepting, let requests being answered finish briefly, remove the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await finish_or_cancel(self._tasks, CLOSE_GRACE)
        self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)
        self._inode = None

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away; nobody is left to tell
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = _peer_uid(writer.get_extra_info("socket"))
        if uid is not None and uid not in (0, os.geteuid()):
            self._warn(f"control: refused a request from uid {uid}")
            writer.write(encode({"ok": False, "error": "permission denied"}))
            await writer.drain()
            return
        async with asyncio.timeout(READ_TIMEOUT):
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                line = b""
        reply = await answer(self._table, line)
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:
            data = encode({"ok": False, "error": f"internal error: unanswerable result: {exc}"})
        writer.write(data)
        await writer.drain()


# --- the client ----------------------------------------------------------------------------
async def request(socket_path: Path, op: str, timeout: float = 30, **args: object) -> object:
    """Send one request; the result, or ServerNotRunning / ControlError."""
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(
                    os.fsencode(socket_path), limit=MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise ServerNotRunning(f"the mail system is not running "
                                       f"(control socket {socket_path}: {exc.strerror})"
                                       ) from None
            except PermissionError:
                raise ControlError(f"permission denied: {socket_path} (run this as the mail "
                                   "system's user)") from None
            try:
                writer.write(encode({"op": op, "args": args}))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except TimeoutError:
        raise ControlError(f"no answer from the mail system within {timeout:g}s") from None
    except ConnectionError as exc:
        raise ControlError(f"the mail system closed the control connection: {exc}") from None
    return _result(line)


def _result(line: bytes) -> object:
    if not line:
        raise ControlError("the mail system closed the control connection without answering")
    try:
        reply = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("malformed answer from the mail system") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError("malformed answer from the mail system")
    if not reply["ok"]:
        raise ControlError(str(reply.get("error") or "request refused"))
    return reply.get("result")


def request_sync(socket_path: Path, op: str, timeout: float = 30, **args: object) -> object:
    """``request`` for the command-line tools, which have no event loop running."""
    return asyncio.run(request(socket_path, op, timeout, **args))
