"""The running mail system: composes queue, cleanup, smtpd and pickup into one object.

Owns: start-up order (queue recovery before any listener accepts), shutdown order (stop
accepting → drain sessions → stop pickup → close the queue), and ``serve()`` for embedders:
``await serve(config, shutdown_trigger=event.wait)``.

Must not: contain protocol logic; every piece it starts is built from the one Config snapshot
it was given, with collaborators passed in (no globals), so two servers can run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailcore.addrclass import DomainClassifier
from mailcore.bounce import Notifier
from mailcore.cleanup import Cleanup
from mailcore.config import Config
from mailcore.delivery.agents import AgentContext, build_agents
from mailcore.dns import Resolver
from mailcore.log import MailLog, open_maillog
from mailcore.model import Route
from mailcore.pickup import Pickup
from mailcore.queue import (
    NewMessage,
    Queue,
    QueuedMessage,
    make_queue_dirs,
    minfree_warning,
    queue_paths,
)
from mailcore.restrictions import Restrictions
from mailcore.rewrite import AddressResolver
from mailcore.scheduler import QueueManager
from mailcore.server import SmtpServer
from mailcore.tables import TableSet


@dataclass(frozen=True)
class Listening:
    host: str
    port: int


class MailSystem:
    """One mailcore instance. ``async with MailSystem(config) as mail: ...`` in tests."""

    def __init__(self, config: Config, *, log: MailLog | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.log = log or open_maillog(config.get, config.config_dir)
        self._clock = clock
        self.paths = queue_paths(config.get_path("queue_directory"))
        self.queue: Queue | None = None
        self.smtpd: SmtpServer | None = None
        self._tables: TableSet | None = None
        self.qmgr: QueueManager | None = None
        self._pickup: Pickup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        config = self.config
        for warning in config.warnings:
            self.log.warning("master", warning)
        warning = minfree_warning(config.get_size("queue_minfree"),
                                  config.get_size("message_size_limit"))
        if warning:
            self.log.warning("master", warning)
        make_queue_dirs(self.paths)
        self.queue = await Queue.open(self.paths.root,
                                      group_commit=config.get_bool("queue_group_commit"))
        self._log_recovery(self.queue.recovery)
        self._tables = TableSet(base_dir=config.config_dir)
        dns = Resolver.from_config(config)
        cleanup = Cleanup(config, self._tables, self.queue, self.log, self.paths.spool,
                          on_enqueued=self._new_mail)
        self.qmgr = self._queue_manager(config, cleanup, dns)
        self._tasks.append(asyncio.create_task(self.qmgr.run(), name="qmgr"))
        self.smtpd = SmtpServer(config, cleanup,
                                Restrictions(config, self._tables, resolver=dns),
                                dns, self.log)
        await self.smtpd.start()
        self._pickup = Pickup(config, cleanup, self.log, self._clock)
        self._tasks.append(asyncio.create_task(self._pickup.run(), name="pickup"))
        self.log.info("master", f"daemon started -- version {config.get('mail_version')}, "
                      f"configuration {config.config_dir}")

    def _queue_manager(self, config: Config, cleanup: Cleanup, dns: Resolver) -> QueueManager:
        assert self.queue is not None and self._tables is not None
        queue, tables = self.queue, self._tables
        classifier = DomainClassifier(config, tables)
        resolver = AddressResolver(config, tables, classifier, cleanup.rewriter)

        async def route(message: QueuedMessage, recipient: str) -> Route:
            resolution = await resolver.resolve(
                recipient, sender=message.sender,
                content_filter=message.attrs.get("content_filter"))
            return resolution.route

        notifier = Notifier(config, self._enqueue_notice, queue.read_content, self.log,
                            new_queue_id=queue.new_queue_id, clock=self._clock)
        agents = build_agents(config, AgentContext(dns, queue.read_content, tables, cleanup,
                                                   classifier, self.log))
        return QueueManager(config, queue, route, agents, self.log, notifier=notifier,
                            clock=self._clock,
                            shutdown_grace=config.get_time("shutdown_grace_time"))

    async def _enqueue_notice(self, message: NewMessage) -> str:
        assert self.queue is not None
        queue_id = await self.queue.enqueue(message)
        self._new_mail(queue_id)
        return queue_id

    def _new_mail(self, queue_id: str) -> None:
        if self.qmgr is not None:
            self.qmgr.wakeup()

    def _log_recovery(self, report) -> None:  # type: ignore[no-untyped-def]
        if report is None:
            return
        if report.active_to_incoming:
            self.log.info("qmgr", f"recovered {report.active_to_incoming} active message(s) "
                          "to the incoming queue")
        for queue_id in report.corrupt_ids:
            self.log.warning("qmgr", f"{queue_id}: damaged queue entry moved to corrupt")

    def listening(self) -> list[Listening]:
        assert self.smtpd is not None
        return [Listening(host, port) for host, port in self.smtpd.bound_addresses()]

    async def stop(self) -> None:
        grace = self.config.get_time("shutdown_grace_time")
        if self.smtpd is not None:
            await self.smtpd.stop(grace)
        if self.qmgr is not None:
            self.qmgr.stop()  # in-flight deliveries finish or are recorded as deferred
        for task in reversed(self._tasks):
            if task.get_name() != "qmgr":
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.queue is not None:
            await self.queue.close()
        if self._tables is not None:
            self._tables.close()
        self.log.info("master", "terminating on signal or request")

    async def __aenter__(self) -> MailSystem:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def serve(config: Config, *,
                shutdown_trigger: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run until ``shutdown_trigger`` returns (forever when None), then shut down cleanly."""
    async with MailSystem(config):
        if shutdown_trigger is None:
            await asyncio.Event().wait()
        else:
            await shutdown_trigger()
