"""One configuration snapshot's objects: what a reload builds and swaps in as a whole.

Owns: the ``Generation`` record (tables, resolver, cleanup, restrictions, routing, delivery
agents, notifier, fast_flush domains of one Config), ``build_generation`` that makes it from a
Config and the collaborators of the running system, ``open_named_tables`` (reload's check
that every table main.cf and master.cf name opens), and ``CurrentCleanup``, pickup's view of
the cleanup across reloads.

Must not: start tasks, listen, touch the queue beyond what the built objects are given, or
keep state between builds; swapping, retiring and closing generations is mailcore.app's job.

Invariants: ``build_generation`` returns a fully built generation or raises and leaks nothing
(its tables are closed); a message pickup opened keeps the cleanup it was opened with until
it is enqueued, even if a reload comes in between.
Parameters: everything the built parts read, plus metrics_listen and the listeners
(validated here so a reload refuses them before anything is swapped), fast_flush_domains,
parent_domain_matches_subdomains.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailcore.addrclass import DomainClassifier
from mailcore.bounce import Notifier
from mailcore.cleanup import Cleanup, MessageWriter
from mailcore.config import Config
from mailcore.delivery.agents import AgentContext, build_agents
from mailcore.dns import Resolver
from mailcore.log import MailLog
from mailcore.metrics import parse_listen
from mailcore.model import Envelope, Route
from mailcore.queue import NewMessage, Queue, QueuedMessage
from mailcore.restrictions import Restrictions
from mailcore.rewrite import AddressResolver
from mailcore.scheduler.qmgr import Agent
from mailcore.server import listen_specs
from mailcore.tables import TableSet
from mailcore.tables.matchlist import DomainList


@dataclass(eq=False)
class Generation:
    """Everything built from one Config snapshot."""

    config: Config
    tables: TableSet
    dns: Resolver
    cleanup: Cleanup
    restrictions: Restrictions
    route: Callable[[QueuedMessage, str], Awaitable[Route]]
    agents: Mapping[str, Agent]
    notifier: Notifier
    fast_flush: DomainList  # fast_flush_domains: the sites ETRN may flush


@dataclass(eq=False)
class CurrentCleanup:
    """Pickup's cleanup: the current generation's for each new message, and the one a
    message was opened with until it is enqueued (a reload may come in between)."""

    current: Callable[[], Cleanup]
    pinned: weakref.WeakKeyDictionary[MessageWriter, Cleanup] = field(
        default_factory=weakref.WeakKeyDictionary)

    def new_queue_id(self) -> str:
        return self.current().new_queue_id()

    async def open(self, **kwargs: Any) -> MessageWriter:
        cleanup = self.current()
        writer = await cleanup.open(**kwargs)
        self.pinned[writer] = cleanup
        return writer

    async def enqueue(self, writer: MessageWriter, envelope: Envelope, queue_id: str) -> str:
        cleanup = self.pinned.pop(writer, None) or self.current()
        return await cleanup.enqueue(writer, envelope, queue_id)

    def uses(self, cleanup: Cleanup) -> bool:
        return any(c is cleanup for c in list(self.pinned.values()))


def build_generation(config: Config, *, queue: Queue, log: MailLog, spool: Path,
                     clock: Callable[[], float],
                     on_enqueued: Callable[[str], None],
                     enqueue_notice: Callable[[NewMessage], Awaitable[str]],
                     open_tables: bool = False) -> Generation:
    """Every per-snapshot object; raises MailcoreError (and leaks nothing) if the
    configuration is not usable. ``open_tables``: open every table main.cf and
    master.cf name now, so a broken one is found before it is used. ``spool`` is the
    queue's spool directory, ``on_enqueued`` is told of each message cleanup queues and
    ``enqueue_notice`` queues a bounce or delay notice."""
    tables = TableSet(base_dir=config.config_dir)
    try:
        if open_tables:
            open_named_tables(config, tables)
        listen_specs(config)
        parse_listen(config.get("metrics_listen"), file=str(config.config_dir / "main.cf"))
        dns = Resolver.from_config(config)
        cleanup = Cleanup(config, tables, queue, log, spool, on_enqueued=on_enqueued)
        restrictions = Restrictions(config, tables, resolver=dns)
        classifier = DomainClassifier(config, tables)
        resolver = AddressResolver(config, tables, classifier, cleanup.rewriter)

        async def route(message: QueuedMessage, recipient: str) -> Route:
            resolution = await resolver.resolve(
                recipient, sender=message.sender,
                content_filter=message.attrs.get("content_filter"))
            return resolution.route

        notifier = Notifier(config, enqueue_notice, queue.read_content, log,
                            new_queue_id=queue.new_queue_id, clock=clock)
        agents = build_agents(config, AgentContext(dns, queue.read_content, tables,
                                                   cleanup, classifier, log))
    except BaseException:
        tables.close()
        raise
    fast_flush = DomainList(config.get_list("fast_flush_domains"), tables,
                            match_subdomains="fast_flush_domains" in
                            config.get_list("parent_domain_matches_subdomains"))
    return Generation(config, tables, dns, cleanup, restrictions, route, agents, notifier,
                      fast_flush)


def open_named_tables(config: Config, tables: TableSet) -> None:
    """Open every table a ``*_maps``-like parameter of main.cf or a master.cf -o names."""
    settings: list[tuple[Config, str]] = [(config, name) for name in config.explicit]
    for service in config.master.services:
        service_config = config.with_overrides(dict(service.overrides))
        settings += [(service_config, name) for name, _ in service.overrides]
    for snapshot, name in settings:
        spec = snapshot.spec(name)
        if spec is not None and spec.kind == "tables":
            for table in snapshot.get_tables(name):
                tables.open(table)
