"""Which delivery agent serves which master.cf transport.

Owns: building one agent per master.cf ``unix`` service whose command is a delivery agent
(smtp, lmtp, local, virtual, pipe, error, discard), each with the service's ``-o`` overrides
applied to its Config, as Postfix starts each service with its own parameters.

Must not: hold a registry filled at import; ``build_agents`` returns a fresh mapping for
one Config snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mailcore.addrclass import DomainClassifier
from mailcore.cleanup import Cleanup
from mailcore.config import Config
from mailcore.config.master import Service
from mailcore.delivery import ContentSource
from mailcore.dns import Resolver
from mailcore.log import MailLog
from mailcore.model import DeliveryRequest, DeliveryResult
from mailcore.tables import TableSet

Deliver = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]


@dataclass(frozen=True)
class AgentContext:
    """What agents of one Config snapshot share."""

    dns: Resolver
    content: ContentSource
    tables: TableSet
    cleanup: Cleanup
    classifier: DomainClassifier
    log: MailLog


def build_agents(config: Config, context: AgentContext) -> Mapping[str, Deliver]:
    """transport name -> its agent's ``deliver``."""
    agents: dict[str, Deliver] = {}
    for name, service in config.master.transports().items():
        service_config = config.with_overrides(dict(service.overrides), service_name=name)
        # local hands mailbox_transport/fallback_transport recipients to another agent.
        agent = _agent(service, service_config, context, agents.get)
        if agent is not None:
            agents[name] = agent
    return MappingProxyType(agents)


def _agent(service: Service, config: Config, ctx: AgentContext,
           other: Callable[[str], Deliver | None]) -> Deliver | None:
    builder = _BUILDERS.get(service.daemon)
    return builder(service, config, ctx, other) if builder else None


def _smtp(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.smtp import SmtpAgent

    return SmtpAgent(config, ctx.dns, ctx.content).deliver


def _lmtp(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.lmtp import LmtpAgent

    return LmtpAgent(config, ctx.content, resolver=ctx.dns).deliver


def _local(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.local import CleanupResubmitter, LocalAgent

    async def is_local(address: str) -> bool:
        domain = address.rpartition("@")[2]
        return not domain or await ctx.classifier.is_local(domain)

    return LocalAgent(
        config, ctx.tables, ctx.content, resubmitter=CleanupResubmitter(ctx.cleanup),
        is_local=is_local, pass_agent=other,
        warn=lambda text: ctx.log.warning(service.name, text),
    ).deliver


def _virtual(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.virtual import VirtualAgent

    return VirtualAgent(config, ctx.tables, ctx.content,
                        warn=lambda text: ctx.log.warning(service.name, text)).deliver


def _pipe(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.pipe import PipeAgent

    return PipeAgent(config, service, ctx.content).deliver


def _error(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.error import ErrorAgent

    return ErrorAgent.for_service(service).deliver


def _discard(service: Service, config: Config, ctx: AgentContext, other) -> Deliver:  # type: ignore[no-untyped-def]
    from mailcore.delivery.discard import DiscardAgent

    return DiscardAgent().deliver


_BUILDERS: Mapping[str, Callable[..., Deliver]] = MappingProxyType({
    "smtp": _smtp,
    "lmtp": _lmtp,
    "local": _local,
    "virtual": _virtual,
    "pipe": _pipe,
    "error": _error,
    "discard": _discard,
})
