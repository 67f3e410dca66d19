"""Metrics: counters of what the server did and an HTTP endpoint that shows them.

Owns: the counters of one running system (connections by listener, messages received,
recipient outcomes by transport), turning them and the state read at scrape time (queue
sizes, per-destination concurrency, the queue writer's commit latency) into Prometheus's text
exposition format 0.0.4, and a minimal HTTP/1.x server answering ``GET /metrics`` on main.cf's
``metrics_listen`` (mailcore's own parameter: ``host:port``, empty = off).

Must not: keep module-level state (a ``Metrics`` belongs to one system and survives reloads),
block the loop, or answer anything but GET/HEAD /metrics.

Invariants: counters only increase; rendering is a pure function of its inputs; every
connection task is tracked and cancelled by ``close``; each read sits under a timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mailcore.errors import ConfigError
from mailcore.model import RecipientResult
from mailcore.queue import STATES, WriterStats
from mailcore.queue.writer import COMMIT_BUCKETS
from mailcore.scheduler.qmgr import DestinationLoad
from mailcore.tasks import finish_or_cancel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 10.0
MAX_HEADER_LINES = 100
MAX_LINE = 8192
CLOSE_GRACE = 1.0

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    suffix: str  # "" or _bucket/_sum/_count
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Scrape:
    """What is read from the running system at scrape time."""

    queue_counts: Mapping[str, int]
    loads: Sequence[DestinationLoad]
    writer: WriterStats


class Metrics:
    """The counters of one running mail system; the callbacks are cheap and never raise."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.started = clock()
        self.connections: Counter[str] = Counter()
        self.received = 0
        self.results: Counter[tuple[str, str]] = Counter()

    def connection(self, listener: str) -> None:
        self.connections[listener] += 1

    def message_received(self) -> None:
        self.received += 1

    def delivery_results(self, transport: str, results: Sequence[RecipientResult]) -> None:
        for result in results:
            self.results[(transport, result.status)] += 1

    def families(self, scrape: Scrape) -> list[Family]:
        return [
            _family("mailcore_start_time_seconds", "gauge",
                    "When the mail system started (Unix time).", [((), self.started)]),
            _family("mailcore_smtpd_connections_total", "counter",
                    "SMTP connections accepted, by master.cf listener.",
                    [((("listener", name),), n) for name, n in sorted(self.connections.items())]),
            _family("mailcore_messages_received_total", "counter",
                    "Messages committed to the queue (SMTP, pickup, notices, forwarding).",
                    [((), self.received)]),
            _family("mailcore_deliveries_total", "counter",
                    "Recipient outcomes by transport and status (sent, deferred, bounced).",
                    [((("transport", t), ("status", s)), n)
                     for (t, s), n in sorted(self.results.items())]),
            _family("mailcore_queue_messages", "gauge", "Messages in each queue state.",
                    [((("state", state),), scrape.queue_counts.get(state, 0))
                     for state in STATES]),
            _family("mailcore_destination_concurrency", "gauge",
                    "Deliveries in flight per destination.",
                    [((("transport", d.transport), ("nexthop", d.nexthop)), d.busy)
                     for d in scrape.loads]),
            _family("mailcore_destination_window", "gauge",
                    "Concurrency window per destination (how many deliveries it may have).",
                    [((("transport", d.transport), ("nexthop", d.nexthop)), d.window)
                     for d in scrape.loads]),
            commit_histogram(scrape.writer),
        ]


def _family(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[Labels, float]]) -> Family:
    return Family(name, kind, help_text,
                  tuple(Sample("", labels, value) for labels, value in samples))


def commit_histogram(stats: WriterStats) -> Family:
    counts = list(stats.commit_counts) or [0] * (len(COMMIT_BUCKETS) + 1)
    samples: list[Sample] = []
    running = 0
    for bound, count in zip((*COMMIT_BUCKETS, math.inf), counts, strict=True):
        running += count
        # Bounds keep their float form (le="5.0"), as Prometheus's own clients write them.
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        samples.append(Sample("_bucket", (("le", le),), running))
    samples.append(Sample("_sum", (), stats.commit_seconds))
    samples.append(Sample("_count", (), running))
    return Family("mailcore_queue_commit_seconds", "histogram",
                  "Time from BEGIN to the end of COMMIT of each queue write transaction.",
                  tuple(samples))


def render(families: Iterable[Family]) -> str:
    """The text exposition format 0.0.4."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
            name = family.name + sample.suffix
            lines.append(f"{name}{{{labels}}} {_number(sample.value)}" if labels
                         else f"{name} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def parse_listen(value: str, *, file: str | None = None) -> tuple[str, int] | None:
    """``metrics_listen``: ``host:port`` or ``[v6addr]:port``; empty means off."""
    value = value.strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"parameter metrics_listen: expected host:port, got {value!r}",
                          file=file)
    return host, int(port)


# --- HTTP ------------------------------------------------------------------------------------
def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
             extra: Sequence[str] = (), head: bool = False) -> bytes:
    headers = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
               f"Content-Length: {len(body)}", "Connection: close", *extra]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head else body)


def route(request_line: bytes, body: Callable[[], Awaitable[str]]
          ) -> tuple[str, Callable[[], Awaitable[bytes]]]:
    """(status, how to build the response) for one request line; pure apart from ``body``."""
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "400", _fixed(response("400 Bad Request", b"bad request\n"))
    method, target, _ = parts
    if target.partition("?")[0] != "/metrics":
        return "404", _fixed(response("404 Not Found", b"not found: try /metrics\n"))
    if method not in ("GET", "HEAD"):
        return "405", _fixed(response("405 Method Not Allowed", b"method not allowed\n",
                                      extra=["Allow: GET, HEAD"]))

    async def metrics() -> bytes:
        text = (await body()).encode()
        return response("200 OK", text, CONTENT_TYPE, head=method == "HEAD")
    return "200", metrics


def _fixed(data: bytes) -> Callable[[], Awaitable[bytes]]:
    async def build() -> bytes:
        return data
    return build


class MetricsServer:
    """The HTTP endpoint; ``body`` renders the page at each scrape."""

    def __init__(self, host: str, port: int, body: Callable[[], Awaitable[str]]) -> None:
        self.host, self.port = host, port
        self._body = body
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  limit=MAX_LINE, reuse_address=True)

    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await finish_or_cancel(self._tasks, CLOSE_GRACE)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            pass  # a client that misbehaves or leaves gets no more of our time
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readuntil(b"\n")
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readuntil(b"\n")).strip() == b"":
                break
        else:
            writer.write(response("431 Request Header Fields Too Large", b"too many headers\n"))
            await writer.drain()
            return
        _, build = route(request_line, self._body)
        writer.write(await build())
        await writer.drain()
