"""In-memory stand-ins for unit tests that must not open sockets."""

from __future__ import annotations


class Stream:
    """A connection's byte stream: reads come from ``payload``, writes collect in ``out``."""

    def __init__(self, payload: bytes):
        self._payload = payload
        self.out = bytearray()
        self.closed = False

    async def read(self, n: int) -> bytes:
        piece, self._payload = self._payload[:n], self._payload[n:]
        return piece

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True
