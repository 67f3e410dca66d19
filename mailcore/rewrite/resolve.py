"""trivial-rewrite's "resolve" service: one recipient → (transport, nexthop, recipient).

Owns: the address class's default transport and nexthop (local_transport, virtual_transport,
relay_transport, default_transport and sender_dependent_default_transport_maps; relayhost and
sender_dependent_relayhost_maps for off-host classes; a ``transport:nexthop`` parameter value
overriding the nexthop), transport_maps with Postfix's key order and its empty-field rules,
relocated_maps, the bad-address and leading-dash checks qmgr applies to the resolver's answer,
the content_filter override, and the parsing of nexthop strings into destinations.
Must not: touch the queue, look anything up in DNS, deliver, or defer by itself: a transport
that master.cf lacks is reported (``transport_unavailable``) and the scheduler defers it with
4.3.0 "mail transport unavailable", as qmgr does.
Invariants: the Route's recipient is ``Rewriter.unroute``'s user@domain (external form) except
under a content filter, which keeps the queued address; the virtual alias class is never
overridden by transport_maps; a table lookup failure raises TableError (the caller defers);
an empty transport (``local_transport =``) raises ConfigError naming the parameter.
Parameters: local_transport, virtual_transport, relay_transport, default_transport,
relayhost, sender_dependent_relayhost_maps, sender_dependent_default_transport_maps,
empty_address_relayhost_maps_lookup_key, empty_address_default_transport_maps_lookup_key,
transport_maps, parent_domain_matches_subdomains, relocated_maps, resolve_numeric_domain,
allow_min_user, show_user_unknown_table_name, smtp_fallback_relay, defer_transports,
myhostname, recipient_delimiter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mailcore.addrclass import AddressClass, DomainClassifier
from mailcore.config import Config
from mailcore.errors import ConfigError
from mailcore.model import Route
from mailcore.rewrite.core import Rewriter
from mailcore.rewrite.forms import internal, split_address
from mailcore.tables import Match, Table, TableSet
from mailcore.tables.search import domain_keys, search_keys, split_extension

ERROR = "error"
BAD_SYNTAX = "5.1.3 bad address syntax"  # qmgr's text for RESOLVE_FLAG_ERROR and '-' users
UNDELIVERABLE = "Address is undeliverable"  # error transport from a table without text
NO_TRANSPORT_REASON = "4.3.0 mail transport unavailable"
DUNNO = "dunno"
SMTP_DAEMONS = frozenset({"smtp", "lmtp"})
_LABEL = re.compile(r"(?!-)[\w-]{1,63}(?<!-)\Z")


@dataclass(frozen=True)
class NextHop:
    """One destination of an smtp/lmtp nexthop: ``[host]:port`` has ``mx=False``;
    ``unix:/path`` has ``unix=True`` and the path as ``host``; ``port`` may be a service name."""

    host: str
    port: str | None = None
    mx: bool = True
    unix: bool = False


@dataclass(frozen=True)
class Resolution:
    """A Route plus how it was reached, for the scheduler, the agents and ``mailcore route``.

    ``address_class`` is None when a content filter bypassed the resolver. ``source`` names
    where the transport came from and ``nexthop_source`` where the nexthop came from
    (a parameter name, "recipient domain", "transport_maps", "content_filter", ...).
    ``transport_match`` is the transport_maps entry used, ``transport_keys`` the keys tried.
    """

    route: Route
    address_class: AddressClass | None
    source: str
    nexthop_source: str
    transport_keys: tuple[str, ...] = ()
    transport_match: Match | None = None
    sender_transport_match: Match | None = None
    sender_relay_match: Match | None = None
    relocated: str | None = None
    routed: bool = False  # the local part still has @, ! or % routing (restrictions care)
    syntax_error: bool = False
    transport_unavailable: bool = False  # no master.cf delivery service of that name
    deferred_transport: bool = False  # listed in defer_transports
    destinations: tuple[NextHop, ...] = ()  # smtp/lmtp nexthop parsed; () for other agents
    fallback_relay: tuple[str, ...] = ()  # smtp_fallback_relay, for the SMTP agent

    @property
    def no_mx(self) -> bool:
        return bool(self.destinations) and not self.destinations[0].mx

    def as_dict(self) -> dict[str, object]:
        def match(m: Match | None) -> dict[str, str] | None:
            return None if m is None else {"table": m.table, "key": m.key, "value": m.value}

        return {
            "transport": self.route.transport, "nexthop": self.route.nexthop,
            "recipient": self.route.recipient,
            "address_class": self.address_class.value if self.address_class else None,
            "source": self.source, "nexthop_source": self.nexthop_source,
            "transport_keys": list(self.transport_keys),
            "transport_match": match(self.transport_match),
            "sender_dependent_default_transport": match(self.sender_transport_match),
            "sender_dependent_relayhost": match(self.sender_relay_match),
            "relocated": self.relocated, "routed": self.routed,
            "syntax_error": self.syntax_error, "no_mx": self.no_mx,
            "transport_unavailable": self.transport_unavailable,
            "deferred_transport": self.deferred_transport,
            "destinations": [{"host": d.host, "port": d.port, "mx": d.mx, "unix": d.unix}
                             for d in self.destinations],
            "fallback_relay": list(self.fallback_relay),
        }


@dataclass(frozen=True)
class _Choice:
    """The transport/nexthop under construction and where each part came from."""

    transport: str
    nexthop: str
    source: str
    nexthop_source: str


class AddressResolver:
    """One per Config snapshot; share the Rewriter of the same snapshot."""

    def __init__(self, config: Config, tables: TableSet, classifier: DomainClassifier,
                 rewriter: Rewriter) -> None:
        self.config = config
        self.tables = tables
        self.classifier = classifier
        self.rewriter = rewriter
        self.myhostname = config.get("myhostname")
        self.delimiter = config.get("recipient_delimiter")
        self.relayhost = config.get("relayhost").strip()
        self.transport_maps = _open(tables, config.get_tables("transport_maps"))
        self.parent_style = "transport_maps" in config.get_list(
            "parent_domain_matches_subdomains")
        self.sender_relay_maps = config.get_tables("sender_dependent_relayhost_maps")
        self.sender_transport_maps = config.get_tables(
            "sender_dependent_default_transport_maps")
        self.null_relay_key = config.get("empty_address_relayhost_maps_lookup_key") or "<>"
        self.null_transport_key = (
            config.get("empty_address_default_transport_maps_lookup_key") or "<>")
        self.numeric_domain = config.get_bool("resolve_numeric_domain")
        self.allow_min_user = config.get_bool("allow_min_user")
        self.unknown_text = "5.1.1 " + rewriter.settings.unknown_text
        self.fallback = config.get_list("smtp_fallback_relay")
        self.defer_transports = frozenset(config.get_list("defer_transports"))
        self.services = config.master.transports()

    async def route(self, sender: str, recipient: str) -> Route:
        """The scheduler's resolver signature: (sender, recipient) → Route."""
        return (await self.resolve(recipient, sender=sender)).route

    async def resolve(self, recipient: str, *, sender: str = "",
                      content_filter: str | None = None) -> Resolution:
        """Resolve one queued recipient; ``content_filter`` is the message's FILTER
        (``transport:destination``), which replaces the resolver as in qmgr."""
        if content_filter:
            return self._finish(_filtered(content_filter, recipient, self.myhostname))
        address = await self.rewriter.unroute(recipient)
        local, domain = split_address(address)
        domain = domain or self.myhostname
        routed = _routed(internal(address))
        if self.numeric_domain and _is_ip(domain):
            domain = f"[{domain}]"
            address = f"{local}@{domain}"
        if not _valid_domain(domain):
            return self._finish(Resolution(Route(ERROR, BAD_SYNTAX, address),
                                           AddressClass.DEFAULT, "bad address syntax",
                                           "bad address syntax", syntax_error=True))
        cls = await self.classifier.classify(domain)
        resolution = await self._classified(cls, address, domain, sender, routed)
        if not self.allow_min_user and address.startswith("-"):
            resolution = _replace_route(resolution, Route(ERROR, BAD_SYNTAX, address),
                                        "allow_min_user")
        return self._finish(resolution)

    async def _classified(self, cls: AddressClass, address: str, domain: str, sender: str,
                          routed: bool) -> Resolution:
        if cls is AddressClass.VIRTUAL_ALIAS:
            # Still in a virtual alias domain after expansion: nobody has that address.
            # transport_maps never override this answer; relocated_maps still do.
            resolution = Resolution(Route(ERROR, self.unknown_text, address), cls,
                                    "virtual_alias_domains", "virtual_alias_domains",
                                    routed=routed)
        else:
            choice, by_sender, relay_by_sender = await self._class_default(cls, domain, sender)
            keys: tuple[str, ...] = ()
            match = None
            if self.transport_maps:
                keys, match = await self._transport_lookup(address, domain)
                if match is not None:
                    choice = _update(choice, match.value, domain)
            resolution = Resolution(
                Route(choice.transport, choice.nexthop, address), cls, choice.source,
                choice.nexthop_source, keys, match, by_sender, relay_by_sender, routed=routed)
        moved = await self.rewriter.relocated(address)
        if moved is not None:
            route = Route(ERROR, f"5.1.6 User has moved to {moved}", address)
            resolution = replace(_replace_route(resolution, route, "relocated_maps"),
                                 relocated=moved)
        return resolution

    async def _class_default(self, cls: AddressClass, domain: str,
                             sender: str) -> tuple[_Choice, Match | None, Match | None]:
        sender_transport = sender_relay = None
        if cls is AddressClass.LOCAL:
            param, nexthop, nexthop_source = "local_transport", domain, "recipient domain"
        elif cls is AddressClass.VIRTUAL_MAILBOX:
            param, nexthop, nexthop_source = "virtual_transport", domain, "recipient domain"
        else:
            param = "relay_transport" if cls is AddressClass.RELAY else "default_transport"
            nexthop, nexthop_source = domain, "recipient domain"
            if self.relayhost:
                nexthop, nexthop_source = self.relayhost, "relayhost"
            sender_relay = await self._sender_lookup(self.sender_relay_maps, sender,
                                                     self.null_relay_key)
            if sender_relay is not None:
                # DUNNO means the recipient domain here, not relayhost (as resolve.c does).
                value = _dunno(sender_relay.value)
                nexthop = value or domain
                nexthop_source = ("sender_dependent_relayhost_maps" if value
                                  else "recipient domain")
        value = self.config.get(param).strip()
        if cls is AddressClass.DEFAULT:
            sender_transport = await self._sender_lookup(self.sender_transport_maps, sender,
                                                         self.null_transport_key)
            if sender_transport is not None and _dunno(sender_transport.value):
                value = sender_transport.value.strip()
                param = "sender_dependent_default_transport_maps"
        transport, colon, destination = value.partition(":")
        if not transport:
            origin = self.config.origins.get(param)
            raise ConfigError(f"parameter {param}: null transport is not allowed",
                              file=origin.file if origin else None,
                              line=origin.line if origin else None)
        if colon and destination:
            nexthop, nexthop_source = destination, param
        return _Choice(transport, nexthop, param, nexthop_source), sender_transport, sender_relay

    async def _sender_lookup(self, specs: Sequence[str], sender: str,
                             null_key: str) -> Match | None:
        if not specs:
            return None
        found = await self.rewriter.find(specs, sender or null_key)
        return found.match

    async def _transport_lookup(self, address: str,
                                domain: str) -> tuple[tuple[str, ...], Match | None]:
        """transport(5): user+ext@domain (all tables), user@domain, domain, parents, then
        ``*``; only the full address and ``*`` reach regexp/pcre tables."""
        full = internal(address)
        local, _, _ = full.rpartition("@")
        keys = [full]
        split = split_extension(local, self.delimiter)
        if split is not None:
            keys.append(f"{split[0]}@{domain}")
        keys.extend(domain_keys(domain, self.parent_style))
        match = await search_keys(self.transport_maps, keys)
        if match is None:
            keys.append("*")
            match = await search_keys(self.transport_maps, ["*"])
        tried = keys[: keys.index(match.key) + 1] if match is not None else keys
        return tuple(tried), match

    def _finish(self, resolution: Resolution) -> Resolution:
        transport = resolution.route.transport
        service = self.services.get(transport)
        smtp_like = service is not None and service.daemon in SMTP_DAEMONS
        return replace(
            resolution,
            transport_unavailable=service is None,
            deferred_transport=transport in self.defer_transports,
            destinations=parse_nexthop(resolution.route.nexthop) if smtp_like else (),
            fallback_relay=self.fallback if service and service.daemon == "smtp" else (),
        )


# ---------------------------------------------------------------- pure helpers
def _open(tables: TableSet, specs: Sequence[str]) -> list[Table]:
    return [tables.open(spec) for spec in specs]


def _dunno(value: str) -> str:
    """A sender-dependent result, "" for DUNNO (or an empty value, which Postfix warns
    about and treats as DUNNO)."""
    text = value.strip()
    return "" if text.lower() == DUNNO else text


def _update(choice: _Choice, value: str, domain: str) -> _Choice:
    """transport(5)'s rules for one table result ``transport:nexthop``."""
    transport, _, nexthop = value.strip().partition(":")
    if not transport:
        # ":" keeps everything; ":nexthop" keeps the class transport.
        if nexthop:
            return _Choice(choice.transport, nexthop, choice.source, "transport_maps")
        return choice
    if nexthop:
        return _Choice(transport, nexthop, "transport_maps", "transport_maps")
    # A new transport without nexthop resets it: relayhost and X_transport's nexthop go.
    if transport == ERROR:
        return _Choice(transport, UNDELIVERABLE, "transport_maps", "transport_maps")
    return _Choice(transport, domain, "transport_maps", "recipient domain")


def _filtered(content_filter: str, recipient: str, myhostname: str) -> Resolution:
    transport, _, nexthop = content_filter.strip().partition(":")
    route = Route(transport, nexthop or myhostname, recipient)
    return Resolution(route, None, "content_filter",
                      "content_filter" if nexthop else "myhostname")


def _replace_route(resolution: Resolution, route: Route, source: str) -> Resolution:
    return replace(resolution, route=route, source=source, nexthop_source=source)


def _routed(address: str) -> bool:
    """resolve.c's RESOLVE_FLAG_ROUTED: an @, ! or % in the local part, whatever
    swap_bangpath and allow_percent_hack say (the next hop may honour them)."""
    local, _, _ = address.rpartition("@")
    return any(op in local for op in "@!%")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _valid_domain(domain: str) -> bool:
    """valid_hostname / valid_mailhost_literal: a host name whose last label is not
    numeric, or ``[ipv4]`` / ``[IPv6:addr]``."""
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            try:
                return ipaddress.ip_address(inner[5:]).version == 6
            except ValueError:
                return False
        try:
            return ipaddress.ip_address(inner).version == 4
        except ValueError:
            return False
    labels = domain.split(".")
    if len(domain) > 255 or not all(_LABEL.match(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def parse_nexthop(nexthop: str) -> tuple[NextHop, ...]:
    """An smtp/lmtp nexthop: destinations separated by commas or white space (Postfix 3.5),
    each ``host``, ``host:port``, ``[host]``, ``[host]:port``, ``inet:…`` or ``unix:/path``."""
    hops: list[NextHop] = []
    for item in re.split(r"[\s,]+", nexthop.strip()):
        if not item:
            continue
        if item.startswith("unix:"):
            hops.append(NextHop(item[5:], None, mx=False, unix=True))
            continue
        if item.startswith("inet:"):
            item = item[5:]
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            port = rest[1:] if bracket and rest.startswith(":") and rest[1:] else None
            hops.append(NextHop(host, port, mx=False))
            continue
        host, colon, port_text = item.rpartition(":")
        if colon and host and ":" not in host:
            hops.append(NextHop(host, port_text or None))
        else:
            hops.append(NextHop(item))
    return tuple(hops)
