"""The maildrop directory: the file format the sendmail command writes and pickup reads.

Owns: the maildrop file format (version 1), the atomic writer (temporary name, fsync, link
to the final name, fsync of the directory) and the reader (envelope at once, content as a
stream of chunks, checksum verified at the end), the scan for ready files (oldest first, in
bounded batches) and moving damaged files aside to ``maildrop/corrupt``.

Must not: talk to the queue or to cleanup; validate addresses (callers do, on both sides).

Format, version 1 (all integers in ASCII decimal, fixed width so the first line can be
rewritten in place once the content is complete):

    MAILCORE-MAILDROP 1 <content length, 20 digits> <envelope length, 10 digits> <sha256>\\n
    <content: the message, every line ending in LF>
    <envelope: one JSON object, ASCII only>\\n

The envelope comes last so that the writer can stream the message first and still record
recipients extracted from its headers (sendmail -t). The checksum covers content and
envelope.

Invariants: a file under its final name is complete (it appears only through link(2) of a
fully written, fsynced temporary file); temporary files start with ``.`` and are never picked
up; names never repeat (link fails on an existing name and the writer picks another).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mailcore.queueid import QueueIdAllocator

VERSION = 1
MAGIC = b"MAILCORE-MAILDROP"
_HEADER_LEN = len(MAGIC) + 1 + 1 + 1 + 20 + 1 + 10 + 1 + 64 + 1
_HEADER_RE = re.compile(rb"MAILCORE-MAILDROP (\d) (\d{20}) (\d{10}) ([0-9a-f]{64})\n\Z")
MAX_ENVELOPE = 64 * 1024 * 1024  # far above any envelope sendmail can produce
CORRUPT_DIR = "corrupt"
TEMP_PREFIX = "."
_NAME_RE = re.compile(r"[0-9A-F]{12}(?:-[0-9a-f]{4})?\Z")
_FILE_MODE = 0o600
_CHUNK = 256 * 1024


class MaildropError(Exception):
    """The maildrop file could not be written (the sendmail command exits EX_TEMPFAIL)."""


class MaildropCorrupt(Exception):
    """A maildrop file is damaged; pickup moves it aside."""


@dataclass(frozen=True)
class DropRecipient:
    address: str
    orig_rcpt: str | None = None
    notify: str | None = None  # DSN NOTIFY: "NEVER" or a comma list of SUCCESS,FAILURE,DELAY


@dataclass(frozen=True)
class DropEnvelope:
    sender: str  # "" for the null sender
    recipients: tuple[DropRecipient, ...]
    arrival_time: float
    uid: int
    full_name: str = ""
    envid: str | None = None
    ret: str | None = None  # FULL or HDRS
    body_type: str = ""  # "", 7BIT or 8BITMIME
    rewrite_context: str = "local"  # "remote" with sendmail -G
    flags: tuple[str, ...] = field(default=())  # informational: "extract" for -t, ...


def encode_envelope(env: DropEnvelope) -> bytes:
    record = {
        "sender": env.sender,
        "recipients": [
            {"address": r.address, "orig_rcpt": r.orig_rcpt, "notify": r.notify}
            for r in env.recipients
        ],
        "arrival_time": env.arrival_time,
        "uid": env.uid,
        "full_name": env.full_name,
        "envid": env.envid,
        "ret": env.ret,
        "body_type": env.body_type,
        "rewrite_context": env.rewrite_context,
        "flags": list(env.flags),
    }
    # ensure_ascii keeps the record on one line whatever the strings contain.
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def _opt_str(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise MaildropCorrupt(f"envelope field {key} is not a string")
    return value


def _req(record: dict, key: str, kind: type | tuple[type, ...]) -> object:
    value = record.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MaildropCorrupt(f"envelope field {key} is missing or has the wrong type")
    return value


def decode_envelope(data: bytes) -> DropEnvelope:
    try:
        record = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MaildropCorrupt(f"envelope is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise MaildropCorrupt("envelope is not a JSON object")
    rcpts = _req(record, "recipients", list)
    recipients = []
    for item in rcpts:  # type: ignore[attr-defined]
        if not isinstance(item, dict):
            raise MaildropCorrupt("recipient is not a JSON object")
        recipients.append(DropRecipient(
            address=str(_req(item, "address", str)),
            orig_rcpt=_opt_str(item, "orig_rcpt"),
            notify=_opt_str(item, "notify"),
        ))  # fmt: skip
    if not recipients:
        raise MaildropCorrupt("envelope has no recipients")
    flags = _req(record, "flags", list)
    if not all(isinstance(f, str) for f in flags):  # type: ignore[attr-defined]
        raise MaildropCorrupt("envelope flags must be strings")
    return DropEnvelope(
        sender=str(_req(record, "sender", str)),
        recipients=tuple(recipients),
        arrival_time=float(_req(record, "arrival_time", (int, float))),  # type: ignore[arg-type]
        uid=int(_req(record, "uid", int)),  # type: ignore[call-overload]
        full_name=str(_req(record, "full_name", str)),
        envid=_opt_str(record, "envid"),
        ret=_opt_str(record, "ret"),
        body_type=str(_req(record, "body_type", str)),
        rewrite_context=str(_req(record, "rewrite_context", str)),
        flags=tuple(flags),  # type: ignore[arg-type]
    )


def _header(content_len: int, envelope_len: int, digest: str) -> bytes:
    return b"%s %d %020d %010d %s\n" % (MAGIC, VERSION, content_len, envelope_len,
                                         digest.encode("ascii"))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildropWriter:
    """One message on its way into maildrop: ``write_line`` each line, then ``commit``.

    Nothing is visible under a final name until ``commit`` returns; ``abort`` (or any
    failure) removes the temporary file."""

    def __init__(self, maildrop_dir: Path, *, allocator: QueueIdAllocator | None = None):
        self._dir = maildrop_dir
        self._ids = allocator or QueueIdAllocator()
        self.temp_path = maildrop_dir / f"{TEMP_PREFIX}tmp.{os.getpid()}.{secrets.token_hex(6)}"
        try:
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except OSError as exc:
            raise MaildropError(f"cannot create {self.temp_path}: {exc.strerror}") from exc
        self._file: BinaryIO = os.fdopen(fd, "wb", buffering=_CHUNK)
        self._hash = hashlib.sha256()
        self.content_size = 0
        self._done = False
        self._io(lambda: self._file.write(_header(0, 0, "0" * 64)))

    def _io(self, action) -> None:  # type: ignore[no-untyped-def]
        try:
            action()
        except OSError as exc:
            self.abort()
            raise MaildropError(f"error writing queue file: {exc.strerror}") from exc

    def write_line(self, line: bytes) -> None:
        """One message line without its terminator (stored with LF)."""
        data = line + b"\n"
        self._hash.update(data)
        self.content_size += len(data)
        self._io(lambda: self._file.write(data))

    def commit(self, envelope: DropEnvelope, preferred_name: str | None = None) -> str:
        """Make the file durable under a fresh final name (``preferred_name`` when it is
        free); returns that name."""
        env = encode_envelope(envelope)
        self._hash.update(env)

        def finish() -> None:
            self._file.write(env)
            self._file.seek(0)
            self._file.write(_header(self.content_size, len(env), self._hash.hexdigest()))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

        self._io(finish)
        name = self._link(preferred_name)
        self._done = True
        self.temp_path.unlink(missing_ok=True)
        try:
            fsync_dir(self._dir)
        except OSError as exc:
            raise MaildropError(f"cannot sync {self._dir}: {exc.strerror}") from exc
        return name

    def _link(self, preferred: str | None) -> str:
        # link(2) never replaces an existing file, so two writers can never collide.
        for attempt in range(64):
            use_preferred = attempt == 0 and preferred is not None and is_drop_name(preferred)
            name = preferred if use_preferred else self._ids.allocate()  # type: ignore[assignment]
            if attempt > 1:
                name += f"-{secrets.token_hex(2)}"
            try:
                os.link(self.temp_path, self._dir / name)
                return name
            except FileExistsError:
                continue
            except OSError as exc:
                self.abort()
                raise MaildropError(f"cannot create maildrop file: {exc.strerror}") from exc
        self.abort()
        raise MaildropError("no free maildrop file name")

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError, ValueError):
            self._file.close()
        self.temp_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class DropFile:
    """A maildrop file whose envelope has been read and checked."""

    path: Path
    envelope: DropEnvelope
    content_size: int
    digest: str
    owner_uid: int  # the file's owner: who really submitted it
    file_size: int

    @property
    def name(self) -> str:
        return self.path.name


def open_drop(path: Path) -> DropFile:
    """Read and check header and envelope; MaildropCorrupt when damaged, OSError when gone."""
    with open(path, "rb") as stream:
        st = os.fstat(stream.fileno())
        header = stream.read(_HEADER_LEN)
        match = _HEADER_RE.match(header)
        if not match:
            raise MaildropCorrupt("bad file header")
        if int(match.group(1)) != VERSION:
            raise MaildropCorrupt(f"unsupported maildrop format version {match.group(1)!r}")
        content_len, env_len = int(match.group(2)), int(match.group(3))
        if env_len > MAX_ENVELOPE or _HEADER_LEN + content_len + env_len != st.st_size:
            raise MaildropCorrupt("file size does not match its header (truncated?)")
        stream.seek(_HEADER_LEN + content_len)
        envelope = decode_envelope(stream.read(env_len))
    return DropFile(path, envelope, content_len, match.group(4).decode(), st.st_uid,
                    st.st_size)


class ContentReader:
    """The content of a DropFile in chunks. ``read`` returns b"" at the end, after checking
    the checksum (MaildropCorrupt on mismatch), so a consumer must not commit before it has
    seen that empty read."""

    def __init__(self, drop: DropFile, chunk_size: int = _CHUNK):
        self._drop = drop
        self._chunk = chunk_size
        self._stream: BinaryIO = open(drop.path, "rb")  # noqa: SIM115 -- closed by close()
        self._stream.seek(_HEADER_LEN)
        self._left = drop.content_size
        self._digest = hashlib.sha256()
        self._checked = False

    def read(self) -> bytes:
        if self._left > 0:
            chunk = self._stream.read(min(self._chunk, self._left))
            if not chunk:
                raise MaildropCorrupt("content ends early")
            self._left -= len(chunk)
            self._digest.update(chunk)
            return chunk
        if not self._checked:
            drop = self._drop
            self._digest.update(self._stream.read(drop.file_size - _HEADER_LEN - drop.content_size))
            if self._digest.hexdigest() != drop.digest:
                raise MaildropCorrupt("checksum mismatch")
            self._checked = True
        return b""

    def close(self) -> None:
        self._stream.close()


def read_all_lines(drop: DropFile) -> Iterator[bytes]:
    """Every content line (without LF), checksum verified at the end; for tests and tools."""
    reader = ContentReader(drop)
    try:
        yield from split_lines(iter(reader.read, b""))
    finally:
        reader.close()


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines without their LF from a chunk stream (a line may span chunks)."""
    partial = b""
    for chunk in chunks:
        data = partial + chunk if partial else chunk
        lines = data.split(b"\n")
        partial = lines.pop()
        yield from lines
    if partial:
        yield partial


def is_drop_name(name: str) -> bool:
    return _NAME_RE.match(name) is not None


def oldest(maildrop_dir: Path, limit: int) -> list[Path]:
    """At most ``limit`` ready files, oldest first (by mtime, then name); memory stays
    bounded by ``limit`` however large the directory is."""

    def entries() -> Iterator[tuple[float, str]]:
        try:
            scan = os.scandir(maildrop_dir)
        except FileNotFoundError:
            return
        with scan:
            for entry in scan:
                if not is_drop_name(entry.name):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        yield entry.stat(follow_symlinks=False).st_mtime, entry.name
                except FileNotFoundError:
                    continue

    return [maildrop_dir / name for _, name in heapq.nsmallest(limit, entries())]


def stale_temp_files(maildrop_dir: Path, older_than: float, now: float) -> list[Path]:
    """Temporary files left by a sendmail that died, untouched for ``older_than`` seconds."""
    found = []
    try:
        scan = os.scandir(maildrop_dir)
    except FileNotFoundError:
        return []
    with scan:
        for entry in scan:
            if entry.name.startswith(TEMP_PREFIX + "tmp."):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                        found.append(Path(entry.path))
    return found


def move_corrupt(path: Path) -> Path:
    """Move a damaged file to maildrop/corrupt, keeping its name unique there."""
    target_dir = path.parent / CORRUPT_DIR
    target_dir.mkdir(mode=0o700, exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        target = target_dir / f"{path.name}.{int(time.time())}.{secrets.token_hex(3)}"
    os.replace(path, target)
    return target
