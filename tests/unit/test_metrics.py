"""Metrics without sockets: the counters, the text exposition format 0.0.4 (checked by a
small parser of that format), the commit-latency histogram, metrics_listen, HTTP routing."""

from __future__ import annotations

import math
import re

import pytest

from mailcore.errors import ConfigError
from mailcore.metrics import (
    CONTENT_TYPE,
    Family,
    Metrics,
    Sample,
    Scrape,
    commit_histogram,
    parse_listen,
    render,
    route,
)
from mailcore.model import RecipientResult
from mailcore.queue import STATES, WriterStats
from mailcore.queue.writer import COMMIT_BUCKETS
from mailcore.scheduler.qmgr import DestinationLoad

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a page, each keyed by name and labels; checks TYPE comes first."""
    assert text.endswith("\n")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP ")
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, _, body, value = match.groups()
        labels: list[tuple[str, str]] = []
        pos = 0
        while body and pos < len(body):
            label = LABEL.match(body, pos)
            assert label, body
            labels.append((label.group(1), label.group(2)))
            pos = label.end()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no TYPE line"
        samples[(name, tuple(labels))] = float(value.replace("+Inf", "inf"))
    return samples


def scrape(**kwargs: object) -> Scrape:
    defaults: dict[str, object] = {"queue_counts": {"incoming": 2, "deferred": 5},
                                   "loads": (), "writer": WriterStats(0, 0)}
    return Scrape(**{**defaults, **kwargs})  # type: ignore[arg-type]


def test_counters_move_with_events():
    metrics = Metrics(clock=lambda: 1000.0)
    before = parse(render(metrics.families(scrape())))
    metrics.connection("127.0.0.1:25")
    metrics.connection("127.0.0.1:25")
    metrics.connection("[::1]:587")
    metrics.message_received()
    metrics.delivery_results("smtp", [RecipientResult(1, "sent", "2.0.0", "ok"),
                                      RecipientResult(2, "deferred", "4.4.1", "no")])
    metrics.delivery_results("local", [RecipientResult(1, "bounced", "5.1.1", "unknown")])
    after = parse(render(metrics.families(scrape())))
    assert ("mailcore_messages_received_total", ()) in before
    assert after[("mailcore_messages_received_total", ())] == 1
    assert after[("mailcore_smtpd_connections_total", (("listener", "127.0.0.1:25"),))] == 2
    assert after[("mailcore_smtpd_connections_total", (("listener", "[::1]:587"),))] == 1
    key = "mailcore_deliveries_total"
    assert after[(key, (("transport", "smtp"), ("status", "sent")))] == 1
    assert after[(key, (("transport", "smtp"), ("status", "deferred")))] == 1
    assert after[(key, (("transport", "local"), ("status", "bounced")))] == 1
    assert after[("mailcore_start_time_seconds", ())] == 1000


def test_queue_gauge_has_every_state():
    samples = parse(render(Metrics().families(scrape())))
    states = {labels[0][1]: v for (name, labels), v in samples.items()
              if name == "mailcore_queue_messages"}
    assert set(states) == set(STATES)
    assert states["incoming"] == 2 and states["deferred"] == 5 and states["hold"] == 0


def test_destination_concurrency_gauges():
    loads = (DestinationLoad("smtp", "[mx.example]:25", busy=3, window=5, waiting=7),)
    samples = parse(render(Metrics().families(scrape(loads=loads))))
    labels = (("transport", "smtp"), ("nexthop", "[mx.example]:25"))
    assert samples[("mailcore_destination_concurrency", labels)] == 3
    assert samples[("mailcore_destination_window", labels)] == 5


def test_commit_histogram_is_cumulative_and_ends_at_inf():
    counts = [0] * (len(COMMIT_BUCKETS) + 1)
    counts[0], counts[3], counts[-1] = 2, 1, 4
    family = commit_histogram(WriterStats(7, 9, commit_seconds=12.5,
                                          commit_counts=tuple(counts)))
    samples = parse(render([family]))
    name = "mailcore_queue_commit_seconds"
    assert samples[(name + "_bucket", (("le", "0.001"),))] == 2
    assert samples[(name + "_bucket", (("le", repr(COMMIT_BUCKETS[3])),))] == 3
    assert samples[(name + "_bucket", (("le", repr(COMMIT_BUCKETS[-1])),))] == 3
    assert samples[(name + "_bucket", (("le", "+Inf"),))] == 7
    assert samples[(name + "_count", ())] == 7
    assert samples[(name + "_sum", ())] == 12.5
    buckets = [v for (n, _), v in samples.items() if n == name + "_bucket"]
    assert buckets == sorted(buckets)


def test_label_values_and_help_are_escaped():
    family = Family("x_total", "counter", 'help with \\ and\nnewline',
                    (Sample("", (("nexthop", 'a"b\\c\nd'),), 1.0),))
    text = render([family])
    assert '# HELP x_total help with \\\\ and\\nnewline\n' in text
    assert 'x_total{nexthop="a\\"b\\\\c\\nd"} 1\n' in text
    assert len(text.splitlines()) == 3


def test_numbers():
    text = render([Family("g", "gauge", "h", (Sample("", (), 0.25), Sample("", (("a", "b"),),
                                                                          math.inf)))])
    assert "g 0.25\n" in text and 'g{a="b"} +Inf\n' in text


@pytest.mark.parametrize("value,expected", [
    ("", None), ("  ", None), ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("[::1]:9100", ("::1", 9100)), ("localhost:0", ("localhost", 0)),
])
def test_metrics_listen(value: str, expected: tuple[str, int] | None):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9100", "127.0.0.1", "127.0.0.1:http", ":9100",
                                   "127.0.0.1:70000"])
def test_bad_metrics_listen(value: str):
    with pytest.raises(ConfigError, match="metrics_listen"):
        parse_listen(value, file="main.cf")


async def page() -> str:
    return "m 1\n"


@pytest.mark.parametrize("line,status", [
    (b"GET /metrics HTTP/1.1\r\n", "200"), (b"GET /metrics?x=1 HTTP/1.0\r\n", "200"),
    (b"HEAD /metrics HTTP/1.1\r\n", "200"), (b"GET / HTTP/1.1\r\n", "404"),
    (b"POST /metrics HTTP/1.1\r\n", "405"), (b"garbage\r\n", "400"),
])
async def test_routing(line: bytes, status: str):
    got, build = route(line, page)
    assert got == status
    data = await build()
    assert data.startswith(f"HTTP/1.1 {status} ".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    if status == "200":
        assert f"Content-Type: {CONTENT_TYPE}".encode() in head
        assert body == (b"" if line.startswith(b"HEAD") else b"m 1\n")
        assert b"Content-Length: 4" in head
    if status == "405":
        assert b"Allow: GET, HEAD" in head
