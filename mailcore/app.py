"""The running mail system: composes queue, cleanup, smtpd, qmgr and pickup into one object.

Owns: start-up order (control socket, then queue recovery, before any listener accepts),
reload (``reload()``, SIGHUP, ``mailcore reload``), shutdown order (stop accepting → drain
sessions → stop the scheduler, in-flight deliveries recorded as deferred → stop pickup →
close the queue), the control channel and metrics endpoint of the instance, and ``serve()``
for embedders: ``await serve(config, shutdown_trigger=event.wait)``.

Must not: contain protocol logic or build per-snapshot objects itself: everything built from
a Config snapshot is built by mailcore.generation (a ``Generation``), with collaborators passed
in (no globals), so two servers can run in one process.

Invariants: a reload either swaps in a fully built generation (new SMTP sessions, new
deliveries and pickup's next message use it) or changes nothing; a generation's tables are
closed only once the sessions and deliveries that started under it have ended; every task
started here is tracked and cancelled or awaited by ``stop``.
Parameters: shutdown_grace_time, control_socket, metrics_listen, queue_directory (a reload
cannot change it), plus everything the parts read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from mailcore.cleanup import Cleanup
from mailcore.config import Config, load_config
from mailcore.control import ControlServer, handlers
from mailcore.errors import MailcoreError
from mailcore.generation import CurrentCleanup, Generation, build_generation, open_named_tables
from mailcore.log import MailLog, open_maillog
from mailcore.metrics import Metrics, MetricsServer, Scrape, parse_listen, render
from mailcore.pickup import Pickup
from mailcore.queue import (
    NewMessage,
    Queue,
    make_queue_dirs,
    minfree_warning,
    queue_paths,
)
from mailcore.scheduler import QueueManager
from mailcore.server import SmtpServer

# The names this module had before the per-snapshot build moved to mailcore.generation.
_Generation = Generation
_CurrentCleanup = CurrentCleanup
_open_named_tables = open_named_tables

MASTER = "master"
# Read once at start; a reload that changes them says they wait for the next start.
START_ONLY = ("control_socket", "maillog_file", "syslog_name", "queue_group_commit",
              "maildrop_scan_interval")


@dataclass(frozen=True)
class Listening:
    host: str
    port: int


class MailSystem:
    """One mailcore instance. ``async with MailSystem(config) as mail: ...`` in tests.

    ``loader`` reads the configuration again for ``reload`` (default: ``load_config`` of the
    snapshot's config_dir); ``control=False`` runs without the control socket."""

    def __init__(self, config: Config, *, log: MailLog | None = None,
                 clock: Callable[[], float] = time.time,
                 loader: Callable[[], Config] | None = None, control: bool = True):
        self.config = config
        self.log = log or open_maillog(config.get, config.config_dir)
        self._clock = clock
        self._loader = loader or (lambda: load_config(config.config_dir))
        self._control_wanted = control
        self.paths = queue_paths(config.get_path("queue_directory"))
        self.metrics = Metrics(clock)
        self.queue: Queue | None = None
        self.smtpd: SmtpServer | None = None
        self.qmgr: QueueManager | None = None
        self.control: ControlServer | None = None
        self.metrics_server: MetricsServer | None = None
        self._generation: Generation | None = None
        self._retiring: list[Generation] = []
        self._pickup_cleanup = CurrentCleanup(self._current_cleanup)
        self._qmgr_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._started = time.monotonic()

    # --- start -------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        for warning in config.warnings:
            self.log.warning(MASTER, warning)
        warning = minfree_warning(config.get_size("queue_minfree"),
                                  config.get_size("message_size_limit"))
        if warning:
            self.log.warning(MASTER, warning)
        make_queue_dirs(self.paths)
        if self._control_wanted:
            # First: it refuses to start beside a running server before recovery touches
            # the queue that server is using.
            self.control = ControlServer(config.get_path("control_socket"), handlers(self),
                                         lambda text: self.log.warning(MASTER, text))
            await self.control.start()
        self.queue = await Queue.open(self.paths.root,
                                      group_commit=config.get_bool("queue_group_commit"))
        self._log_recovery(self.queue.recovery)
        gen = self._generation = self._build(config)
        self.qmgr = QueueManager(config, self.queue, gen.route, gen.agents, self.log,
                                 notifier=gen.notifier, clock=self._clock,
                                 shutdown_grace=config.get_time("shutdown_grace_time"),
                                 results_hook=self.metrics.delivery_results)
        self._qmgr_task = asyncio.create_task(self.qmgr.run(), name="qmgr")
        self.smtpd = SmtpServer(config, gen.cleanup, gen.restrictions, gen.dns, self.log,
                                on_connect=self.metrics.connection, etrn=self._etrn)
        await self.smtpd.start()
        pickup = Pickup(config, self._pickup_cleanup,  # type: ignore[arg-type]
                        self.log, self._clock)
        self._spawn(pickup.run(), "pickup")
        self.metrics_server = await self._metrics_server(config)
        self._started = time.monotonic()
        self.log.info(MASTER, f"daemon started -- version {config.get('mail_version')}, "
                      f"configuration {config.config_dir}")

    def _build(self, config: Config, *, open_tables: bool = False) -> Generation:
        """Every per-snapshot object (see ``build_generation``), wired to this system."""
        assert self.queue is not None
        return build_generation(config, queue=self.queue, log=self.log, spool=self.paths.spool,
                                clock=self._clock, on_enqueued=self._new_mail,
                                enqueue_notice=self._enqueue_notice, open_tables=open_tables)

    async def _etrn(self, site: str) -> bool:
        """ETRN: flush the deferred mail of a site in fast_flush_domains, as Postfix's flush
        service does for smtpd."""
        if self._generation is None or self.qmgr is None:
            return False
        if not await self._generation.fast_flush.matches(site):
            return False
        await self.qmgr.flush_site(site)
        return True

    async def _metrics_server(self, config: Config) -> MetricsServer | None:
        address = parse_listen(config.get("metrics_listen"))
        if address is None:
            return None
        server = MetricsServer(*address, body=self.scrape)
        await server.start()
        return server

    def _current_cleanup(self) -> Cleanup:
        assert self._generation is not None
        return self._generation.cleanup

    async def _enqueue_notice(self, message: NewMessage) -> str:
        assert self.queue is not None
        queue_id = await self.queue.enqueue(message)
        self._new_mail(queue_id)
        return queue_id

    def _new_mail(self, queue_id: str) -> None:
        self.metrics.message_received()
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

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._report_crash)

    # --- what the control channel and the metrics endpoint read -------------------------
    def listening(self) -> list[Listening]:
        assert self.smtpd is not None
        return [Listening(host, port) for host, port in self.smtpd.bound_addresses()]

    async def status(self) -> dict[str, object]:
        if self.queue is None:
            raise MailcoreError("the mail system is starting")
        return {
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self._started, 3),
            "listeners": [[host, port] for host, port in
                          (self.smtpd.bound_addresses() if self.smtpd else [])],
            "queue": dict(await self.queue.counts()),
            "version": self.config.get("mail_version"),
            "config_directory": str(self.config.config_dir),
        }

    async def scrape(self) -> str:
        """The metrics page (Prometheus text format)."""
        assert self.queue is not None
        loads = self.qmgr.destination_loads() if self.qmgr is not None else ()
        scrape = Scrape(await self.queue.counts(), loads, self.queue.stats)
        return render(self.metrics.families(scrape))

    # --- reload --------------------------------------------------------------------------
    async def reload(self) -> None:
        """Read the configuration again and use it for new sessions and deliveries; raises
        MailcoreError (logged, nothing changed) when the new configuration is not usable."""
        async with self._reload_lock:
            if self._stopping or self.smtpd is None or self.qmgr is None:
                raise MailcoreError("the mail system is not running")
            try:
                config = await asyncio.to_thread(self._loader)
                self._check_unchanged(config)
                gen = self._build(config, open_tables=True)
            except MailcoreError as exc:
                self.log.error(MASTER, f"reload refused, the running configuration is kept: "
                                       f"{exc}")
                raise
            try:
                await self._swap(config, gen)
            except OSError as exc:
                gen.tables.close()
                self.log.error(MASTER, f"reload refused, the running configuration is kept: "
                                       f"cannot listen: {exc}")
                raise MailcoreError(f"cannot listen: {exc}") from exc
        for warning in config.warnings:
            self.log.warning(MASTER, warning)
        self.log.info(MASTER, f"reload -- version {config.get('mail_version')}, "
                      f"configuration {config.config_dir}")

    def _check_unchanged(self, config: Config) -> None:
        if config.get_path("queue_directory") != self.config.get_path("queue_directory"):
            raise MailcoreError("queue_directory cannot change while the mail system runs: "
                                "stop and start it instead")
        for name in START_ONLY:
            if config.get(name) != self.config.get(name):
                self.log.warning(MASTER, f"{name} changed: it takes effect at the next start")

    async def _swap(self, config: Config, gen: Generation) -> None:
        assert self.smtpd is not None and self.qmgr is not None
        metrics_server = self.metrics_server
        if config.get("metrics_listen") != self.config.get("metrics_listen"):
            metrics_server = await self._metrics_server(config)
        try:
            await self.smtpd.reconfigure(config, gen.cleanup, gen.restrictions, gen.dns)
        except BaseException:
            if metrics_server is not self.metrics_server and metrics_server is not None:
                await metrics_server.close()
            raise
        if metrics_server is not self.metrics_server:
            old_metrics, self.metrics_server = self.metrics_server, metrics_server
            if old_metrics is not None:
                await old_metrics.close()
        old, self._generation, self.config = self._generation, gen, config
        busy = self.smtpd.sessions() | self.qmgr.inflight()  # before new work can start
        self.qmgr.reconfigure(config, gen.route, gen.agents, gen.notifier,
                              config.get_time("shutdown_grace_time"))
        if old is not None:
            self._retiring.append(old)
            self._spawn(self._retire(old, busy), "retire")

    async def _retire(self, old: Generation, busy: frozenset[asyncio.Task[None]]) -> None:
        """Close a replaced generation's tables once nothing started under it is running."""
        if busy:
            await asyncio.wait(busy)
        while self._pickup_cleanup.uses(old.cleanup):
            await asyncio.sleep(0.1)
        self._retiring.remove(old)
        old.tables.close()

    def request_reload(self) -> None:
        """SIGHUP: reload in the background (a refusal is logged by ``reload``)."""
        if not self._stopping:
            self._spawn(self._reload_logged(), "reload")

    async def _reload_logged(self) -> None:
        with contextlib.suppress(MailcoreError):
            await self.reload()

    # --- stop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """``mailcore stop`` through the control channel: ``wait`` returns, then ``stop``."""
        self._stop_requested.set()

    async def wait(self, trigger: Callable[[], Awaitable[object]] | None = None) -> None:
        """Until ``request_stop`` is called or ``trigger`` returns."""
        waiters = {asyncio.ensure_future(self._stop_requested.wait())}
        if trigger is not None:
            waiters.add(asyncio.ensure_future(trigger()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def stop(self) -> None:
        self._stopping = True
        grace = self.config.get_time("shutdown_grace_time")
        # A reload must not open listeners behind the drain's back.
        await self._cancel([t for t in self._tasks if t.get_name() in ("reload", "retire")])
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.smtpd is not None:
            await self.smtpd.stop(grace)
        if self.qmgr is not None:
            self.qmgr.stop()  # in-flight deliveries finish or are recorded as deferred
        await self._cancel(list(self._tasks))
        if self._qmgr_task is not None:
            await asyncio.wait([self._qmgr_task])
            self._report_crash(self._qmgr_task)
        if self.control is not None:
            await self.control.close()
        if self.queue is not None:
            await self.queue.close()
        for gen in [*self._retiring, *([self._generation] if self._generation else [])]:
            gen.tables.close()
        self._retiring.clear()
        self.log.info(MASTER, "terminating on signal or request")

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel and wait; asyncio.wait never absorbs our own cancellation."""
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error(MASTER, f"{task.get_name()} failed: {task.exception()!r}")

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
                shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
                loader: Callable[[], Config] | None = None) -> None:
    """Run until ``shutdown_trigger`` returns (forever when None) or ``mailcore stop``, then
    shut down cleanly."""
    async with MailSystem(config, loader=loader) as system:
        await system.wait(shutdown_trigger)
