"""pickup: moves mail from the maildrop directory through cleanup into the queue.

Owns: scanning maildrop every maildrop_scan_interval (mailcore's own parameter) or at once
after ``wakeup()``, oldest file first and in bounded batches; streaming each file's content
into cleanup with the ``Received: by HOST (mailcore, from userid N)`` header; moving damaged
or refused files to maildrop/corrupt; removing temporary files a dead sendmail left behind.

Must not: write the queue itself (cleanup does), parse sendmail options, or trust a maildrop
file: addresses are validated again, and the uid logged is the file owner's, as Postfix's
pickup does.

Invariants: a maildrop file is deleted only after cleanup's enqueue has committed the message
(a crash in between can deliver a message twice, never lose it); a damaged file never stops
the loop; a queue write failure leaves the file for the next scan. Logs
``QUEUEID: uid=N from=<sender>`` before cleanup's own lines. Parameters: queue_directory,
maildrop_scan_interval, myhostname, mail_name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from mailcore import maildrop
from mailcore.address import AddressError
from mailcore.cleanup import Cleanup, CleanupReject, MessageWriter, received_header
from mailcore.config import Config
from mailcore.log import MailLog
from mailcore.maildrop import ContentReader, DropFile, MaildropCorrupt
from mailcore.model import ClientInfo, Envelope, EnvelopeRecipient
from mailcore.queue import QueueError, queue_paths
from mailcore.sendmail import validate_address

BATCH = 100
STALE_TEMP_SECONDS = 24 * 3600
# Local submission has no network client; empty fields are left out of the stored attributes.
LOCAL_CLIENT = ClientInfo(address="", name="", reverse_name="", helo="", protocol="")


class Outcome(Enum):
    QUEUED = "queued"
    SET_ASIDE = "set aside"  # moved to maildrop/corrupt
    GONE = "gone"  # vanished before we read it
    SKIPPED = "skipped"  # left in place: this file cannot be read now
    RETRY = "retry"  # left in place: the queue cannot take mail now, stop this scan


class Pickup:
    """The pickup service of one server. ``run`` until cancelled; ``wakeup`` scans now."""

    def __init__(self, config: Config, cleanup: Cleanup, log: MailLog,
                 clock: Callable[[], float] = time.time):
        self._dir = queue_paths(config.get_path("queue_directory")).maildrop
        self._interval = config.get_time("maildrop_scan_interval")
        self._myhostname = config.get("myhostname")
        self._mail_name = config.get("mail_name")
        self._cleanup = cleanup
        self._log = log
        self._clock = clock
        self._wake = asyncio.Event()

    def wakeup(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.scan()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()

    async def scan(self) -> int:
        """Process what maildrop holds now, oldest first; returns messages queued."""
        await self._remove_stale_temp_files()
        queued = 0
        while True:
            paths = await asyncio.to_thread(maildrop.oldest, self._dir, BATCH)
            progress = False
            for path in paths:
                outcome = await self.process(path)
                if outcome is Outcome.RETRY:
                    return queued  # the queue is in trouble: try again at the next scan
                queued += outcome is Outcome.QUEUED
                progress = progress or outcome is not Outcome.SKIPPED
            if len(paths) < BATCH or not progress:
                return queued

    async def process(self, path: Path) -> Outcome:
        try:
            drop = await asyncio.to_thread(maildrop.open_drop, path)
            envelope = self._envelope(drop)
        except FileNotFoundError:
            return Outcome.GONE
        except (MaildropCorrupt, AddressError, ValueError) as exc:
            return await self._set_aside(path, f"corrupt file: {exc}")
        except OSError as exc:
            self._log.warning("pickup", f"maildrop/{path.name}: cannot read: {exc.strerror}")
            return Outcome.SKIPPED
        queue_id = self._cleanup.new_queue_id()
        self._log.info("pickup", f"{queue_id}: uid={drop.owner_uid} from=<{envelope.sender}>")
        return await self._enqueue(drop, envelope, queue_id)

    def _envelope(self, drop: DropFile) -> Envelope:
        """The queue envelope, every address validated again (the file may not come from
        our sendmail)."""
        env = drop.envelope
        sender = validate_address(env.sender, for_sender=True) if env.sender else ""
        recipients = []
        for r in env.recipients:
            address = validate_address(r.address)
            if r.notify is not None and r.notify != "NEVER" and not set(
                    r.notify.split(",")) <= {"SUCCESS", "FAILURE", "DELAY"}:
                raise ValueError(f"bad DSN notify value {r.notify!r}")
            recipients.append(EnvelopeRecipient(address, r.orig_rcpt, r.notify))
        if env.ret not in (None, "FULL", "HDRS"):
            raise ValueError(f"bad DSN RET value {env.ret!r}")
        attrs = (("rewrite_context", "remote"),) if env.rewrite_context == "remote" else ()
        return Envelope(
            sender=sender, recipients=tuple(recipients), client=LOCAL_CLIENT,
            arrival_time=env.arrival_time, ret=env.ret, envid=env.envid,
            body_type="8BITMIME" if env.body_type == "8BITMIME" else env.body_type,
            local_submission=True, attrs=attrs,
        )  # fmt: skip

    async def _enqueue(self, drop: DropFile, envelope: Envelope, queue_id: str) -> Outcome:
        first = received_header(
            client=LOCAL_CLIENT, myhostname=self._myhostname, mail_name=self._mail_name,
            queue_id=queue_id, recipients=[r.address for r in envelope.recipients],
            when=self._clock(), local_uid=drop.owner_uid,
        )  # fmt: skip
        writer = await self._cleanup.open(
            queue_id=queue_id, sender=envelope.sender, local_submission=True,
            first_headers=first, full_name=drop.envelope.full_name,
        )  # fmt: skip
        try:
            await self._copy(drop, writer)
            await self._cleanup.enqueue(writer, envelope, queue_id)
        except MaildropCorrupt as exc:
            writer.abort()
            return await self._set_aside(drop.path, f"corrupt file: {exc}", queue_id)
        except CleanupReject as exc:
            writer.abort()
            self._log.info("cleanup", f"{queue_id}: reject: {exc.code} {exc.dsn} {exc.text}")
            return await self._set_aside(drop.path, "message refused by cleanup", queue_id)
        except QueueError as exc:
            writer.abort()
            self._log.warning("pickup", f"{queue_id}: maildrop/{drop.name}: not queued, "
                              f"will retry: {exc}")
            return Outcome.RETRY
        except OSError as exc:
            writer.abort()
            self._log.warning("pickup", f"{queue_id}: maildrop/{drop.name}: not queued, "
                              f"will retry: {exc.strerror}")
            return Outcome.SKIPPED
        except BaseException:
            writer.abort()
            raise
        await asyncio.to_thread(self._remove, drop.path)
        return Outcome.QUEUED

    async def _copy(self, drop: DropFile, writer: MessageWriter) -> None:
        """Stream the content into cleanup a chunk at a time; file reads run off the loop."""
        reader = await asyncio.to_thread(ContentReader, drop)
        try:
            partial = b""
            while chunk := await asyncio.to_thread(reader.read):
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    await writer.write_line(line)
            if partial:
                await writer.write_line(partial)
        finally:
            reader.close()

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        maildrop.fsync_dir(path.parent)

    async def _set_aside(self, path: Path, why: str, queue_id: str | None = None) -> Outcome:
        prefix = f"{queue_id}: " if queue_id else ""
        try:
            target = await asyncio.to_thread(maildrop.move_corrupt, path)
        except FileNotFoundError:
            return Outcome.GONE
        except OSError as exc:
            self._log.error("pickup", f"{prefix}maildrop/{path.name}: {why}; cannot move it "
                            f"aside: {exc.strerror}")
            return Outcome.RETRY
        self._log.warning("pickup", f"{prefix}maildrop/{path.name}: {why}; moved to "
                          f"maildrop/{maildrop.CORRUPT_DIR}/{target.name}")
        return Outcome.SET_ASIDE

    async def _remove_stale_temp_files(self) -> None:
        stale = await asyncio.to_thread(
            maildrop.stale_temp_files, self._dir, STALE_TEMP_SECONDS, self._clock())
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                self._log.warning("pickup", f"removed stale temporary file maildrop/{path.name}")
