"""A small authoritative DNS server on 127.0.0.1 for tests (UDP and TCP, random port).

Records come as a dict ``{"name.example": {"A": ["192.0.2.1"], "PTR": ["host.example"]}}``;
names listed in ``servfail`` answer SERVFAIL, names in ``drop`` get no answer at all (the
client times out). Anything else not in the dict is NXDOMAIN. Use it as an async context
manager; ``.port`` is the port both transports listen on and ``.nameserver`` the
``dns_nameservers`` value for main.cf.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable, Mapping

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = Mapping[str, Mapping[str, Iterable[str]]]


def _key(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


class DnsServer:
    def __init__(self, records: Records, *, servfail: Iterable[str] = (),
                 drop: Iterable[str] = (), ttl: int = 60):
        self._records = {
            _key(name): {rdtype.upper(): list(values) for rdtype, values in types.items()}
            for name, types in records.items()
        }
        self._servfail = {_key(n) for n in servfail}
        self._drop = {_key(n) for n in drop}
        self._ttl = ttl
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        """The reply to one query in wire format, or None to stay silent."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        if question.name in self._drop:
            return None
        if question.name in self._servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        types = self._records.get(question.name)
        if types is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = types.get(rdtype, [])
        if values:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
            for value in values:
                if rdtype in ("PTR", "CNAME", "MX", "NS"):
                    value = value if value.endswith(".") else value + "."
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, value),
                          self._ttl)
            response.answer.append(rrset)
        return response.to_wire()

    async def __aenter__(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        # Bind TCP first on port 0, then UDP on the same number (retry if it is taken).
        for _ in range(20):
            tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0)
            port = tcp.sockets[0].getsockname()[1]
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=("127.0.0.1", port), family=socket.AF_INET)
            except OSError:
                tcp.close()
                await tcp.wait_closed()
                continue
            self._tcp, self._udp, self.port = tcp, udp, port
            return self
        raise RuntimeError("no free port for the test DNS server")

    async def __aexit__(self, *exc: object) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    async with asyncio.timeout(10):
                        (length,) = struct.unpack("!H", await reader.readexactly(2))
                        wire = await reader.readexactly(length)
                    reply = self.answer(wire)
                    if reply is None:
                        continue
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self._server.answer(data)
        except Exception:  # a malformed packet gets no answer, like a real server would
            return
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)
