"""Which delivery agent serves which master.cf transport.

Owns: building one agent per master.cf ``unix`` service whose command is a delivery agent
(smtp, lmtp, local, virtual, pipe, error, discard), each with the service's ``-o`` overrides
applied to its Config, as Postfix starts each service with its own parameters.

Must not: hold a registry filled at import; ``build_agents`` returns a fresh mapping for
one Config snapshot.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from mailcore.config import Config
from mailcore.config.master import Service
from mailcore.delivery import ContentSource
from mailcore.dns import Resolver
from mailcore.model import DeliveryRequest, DeliveryResult

Deliver = Callable[[DeliveryRequest], Awaitable[DeliveryResult]]


def build_agents(config: Config, dns: Resolver, content: ContentSource, **extra: object
                 ) -> Mapping[str, Deliver]:
    """transport name -> its agent's ``deliver``; ``extra`` carries what final delivery needs
    (tables, cleanup for resubmission) to the agents that take it."""
    agents: dict[str, Deliver] = {}
    for name, service in config.master.transports().items():
        service_config = config.with_overrides(dict(service.overrides), service_name=name)
        agent = _agent(service, service_config, dns, content, extra)
        if agent is not None:
            agents[name] = agent
    return MappingProxyType(agents)


def _agent(service: Service, config: Config, dns: Resolver, content: ContentSource,
           extra: Mapping[str, object]) -> Deliver | None:
    daemon = service.daemon
    if daemon == "smtp":
        from mailcore.delivery.smtp import SmtpAgent

        return SmtpAgent(config, dns, content).deliver
    if daemon == "lmtp":
        from mailcore.delivery.lmtp import LmtpAgent

        return LmtpAgent(config, content, resolver=dns).deliver
    factory = _OPTIONAL.get(daemon)
    if factory is None:
        return None
    module = importlib.import_module(factory)
    return module.build_agent(service, config, content, **extra)


# Agents whose module offers ``build_agent(service, config, content, **extra)``.
_OPTIONAL: Mapping[str, str] = MappingProxyType({
    "local": "mailcore.delivery.local",
    "virtual": "mailcore.delivery.virtual",
    "pipe": "mailcore.delivery.pipe",
    "error": "mailcore.delivery.error",
    "discard": "mailcore.delivery.discard",
})
