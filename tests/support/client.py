"""A raw SMTP client over asyncio sockets, for dialogues that real clients refuse to send."""

from __future__ import annotations

import asyncio
import re

_FINAL = re.compile(rb"^\d{3}(?: .*)?$")


async def raw_session(host: str, port: int, payload: bytes | list[bytes], *,
                      local_addr: tuple[str, int] | None = None, timeout: float = 10.0,
                      pause: float = 0.0) -> bytes:
    """Send ``payload`` (pieces sent ``pause`` seconds apart) and return everything the
    server wrote until it closed the connection."""
    pieces = [payload] if isinstance(payload, bytes) else payload
    reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    try:
        async with asyncio.timeout(timeout):
            for piece in pieces:
                if reader.at_eof():
                    break  # the server hung up: what it said is all there is
                try:
                    writer.write(piece)
                    await writer.drain()
                except ConnectionError:
                    break
                if pause:
                    await asyncio.sleep(pause)
            return await reader.read()
    finally:
        writer.close()


def reply_codes(transcript: bytes) -> list[int]:
    """The codes of the final lines of each reply, in order."""
    return [int(line[:3]) for line in transcript.split(b"\r\n") if _FINAL.match(line)]


def reply_lines(transcript: bytes) -> list[str]:
    return [line.decode("utf-8", "replace") for line in transcript.split(b"\r\n")
            if _FINAL.match(line)]
