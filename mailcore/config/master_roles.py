"""What mailcore does with each master.cf entry in one process: listener, transport or inert.

Owns: which daemon names are smtpd listeners and delivery agents, and the report of entries and
fields that have no effect in mailcore (``MasterConfig.inert`` is built from ``_inert_reasons``).
Must not: parse master.cf (master.py), open sockets, or refuse entries: an entry mailcore cannot
honour is reported, never an error.

Invariants: a service is a listener, a transport, or has at least one inert reason for its
daemon; the reasons are plain sentences meant for ``postfix check``-style output.

Reads no main.cf parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailcore.config.master import Service

LISTENER_DAEMON = "smtpd"
DELIVERY_AGENTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error", "discard"})


def _coroutine(role: str) -> str:
    return (f"{role} runs inside mailcore as a coroutine; "
            "this entry's process settings have no effect")


def _absent(role: str) -> str:
    return f"{role}: mailcore runs no separate process for this; the entry has no effect"


# Postfix daemons whose job mailcore does in-process (or does not need in one process).
_BUILTIN: Mapping[str, str] = MappingProxyType({
    "pickup": _coroutine("pickup"),
    "cleanup": _coroutine("cleanup"),
    "qmgr": _coroutine("qmgr (the scheduler)"),
    "oqmgr": _coroutine("the scheduler (qmgr; there is no separate oqmgr)"),
    "trivial-rewrite": _coroutine("trivial-rewrite (address rewriting and resolving)"),
    "bounce": _coroutine("bounce (bounce, defer and trace notices)"),
    "flush": _coroutine("flush (handled by the scheduler)"),
    "showq": _absent("showq (the queue tools read the queue database directly)"),
    "proxymap": _absent("proxymap (lookup tables are opened in-process)"),
    "postlogd": _absent("postlogd (mailcore writes its own log)"),
    "verify": _absent("verify"),
    "anvil": _absent("anvil"),
    "scache": _absent("scache"),
    "tlsmgr": _absent("tlsmgr"),
    "postscreen": "postscreen is not part of mailcore; no listener is opened for this entry",
    "dnsblog": "dnsblog serves postscreen, which is not part of mailcore",
    "tlsproxy": "tlsproxy serves postscreen, which is not part of mailcore",
})



def _is_listener(service: Service) -> bool:
    return service.type == "inet" and service.daemon == LISTENER_DAEMON


def _is_transport(service: Service) -> bool:
    return service.type == "unix" and service.daemon in DELIVERY_AGENTS


def _inert_reasons(service: Service) -> list[str]:
    daemon = service.daemon
    if daemon in _BUILTIN:
        return [_BUILTIN[daemon]]
    if service.type == "inet" and daemon != LISTENER_DAEMON:
        return [f"{daemon} on an inet service: mailcore listens only with smtpd, "
                "so this address is not opened"]
    if daemon == LISTENER_DAEMON and service.type != "inet":
        return [f"smtpd on a {service.type} service: mailcore's smtpd listens only on inet "
                "services"]
    if daemon in DELIVERY_AGENTS and service.type != "unix":
        return [f"{daemon} on a {service.type} service: delivery agents are transports only "
                "as unix services"]
    if daemon not in DELIVERY_AGENTS and daemon != LISTENER_DAEMON:
        return [f"mailcore has no daemon named {daemon}; the entry is accepted and ignored"]
    return _inert_fields(service)


def _inert_fields(service: Service) -> list[str]:
    """Columns and options of an active service that one process cannot honour."""
    reasons: list[str] = []
    if service.chroot:
        reasons.append("chroot y: mailcore runs as one process and does not chroot")
    if not service.private and service.type != "inet":
        reasons.append("private n: mailcore has no per-service sockets to make public")
    if not service.unpriv:
        reasons.append("unpriv n: mailcore does not switch privileges per service")
    if service.wakeup is not None:
        reasons.append("wakeup: a timer only matters for pickup, qmgr and flush")
    if service.debug:
        reasons.append("-D: debugger_command is not run")
    if service.verbose:
        reasons.append("-v: per-service verbose logging is not supported")
    if service.operands and service.daemon != "pipe":
        reasons.append(f"arguments ignored by {service.daemon}: " + " ".join(service.operands))
    if service.pipe is not None and service.pipe.chroot is not None:
        reasons.append("pipe chroot=: mailcore does not chroot commands")
    return reasons

