"""The host's own network facts, for Postfix's computed defaults (mynetworks_style).

Owns: reading the machine's interface addresses and netmasks from the kernel (ioctl on Linux,
/proc/net/if_inet6), without any DNS or NSS lookup.

Must not: be called in a hot path; results feed the Config snapshot once per load.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def interface_addresses() -> list[Interface]:
    """Every configured interface address with its prefix, IPv4 then IPv6."""
    return _ipv4_interfaces() + _ipv6_interfaces()


def _ipv4_interfaces() -> list[Interface]:
    found: list[Interface] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            packed = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, packed)[20:24]
                mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, packed)[20:24]
            except OSError:
                continue  # an interface without an IPv4 address
            network = f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}"
            found.append(ipaddress.ip_interface(network))
    return found


def _ipv6_interfaces() -> list[Interface]:
    path = Path("/proc/net/if_inet6")
    if not path.exists():
        return []
    found: list[Interface] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        raw, prefix = fields[0], int(fields[2], 16)
        text = ":".join(raw[i : i + 4] for i in range(0, 32, 4))
        found.append(ipaddress.ip_interface(f"{text}/{prefix}"))
    return found


def mynetworks_for_style(style: str, interfaces: list[Interface]) -> list[str]:
    """Postfix's mynetworks default for mynetworks_style host, subnet or class."""
    style = style.strip().lower()
    if style not in ("host", "subnet", "class"):
        raise ValueError(f"bad mynetworks_style value {style!r} (expected host, subnet or class)")
    result: list[str] = ["127.0.0.0/8", "[::1]/128"]
    for interface in interfaces:
        if interface.ip.is_loopback or interface.ip.is_link_local:
            continue
        chosen = _widen(interface, style)
        text = _format(chosen)
        if text not in result:
            result.append(text)
    return result


def _widen(interface: Interface, style: str) -> Network:
    network = interface.network
    if style == "host":
        return ipaddress.ip_network(interface.ip)
    if style == "class" and network.version == 4:
        first = int(str(network.network_address).split(".")[0])
        prefix = 8 if first < 128 else 16 if first < 192 else 24
        return network.supernet(new_prefix=min(prefix, network.prefixlen))
    return network


def _format(network: Network) -> str:
    if network.version == 6:
        return f"[{network.network_address}]/{network.prefixlen}"
    return str(network)
