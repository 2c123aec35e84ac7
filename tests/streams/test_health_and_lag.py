"""The worker's HTTP endpoint (/metrics, /healthz, /readyz) and the consumer-lag gauges."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from agents.pipeline_agent import OffsetGate
from streams import metrics
from streams.app import Progress
from streams.embedded_broker import free_port
from streams.ledger_sink import ledger_lag


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served() -> tuple[int, metrics.Health]:
    health = metrics.Health(stall_s=30.0)
    port = free_port()
    metrics.serve(port, "127.0.0.1", health)
    return port, health


def test_readiness_follows_the_worker(served: tuple[int, metrics.Health]) -> None:
    port, health = served
    assert get(port, "/readyz") == (503, "starting\n")
    health.set_ready(True, "ok")
    assert get(port, "/readyz") == (200, "ok\n")
    assert metrics.READY._value.get() == 1
    health.set_ready(False, "rebalancing")
    assert get(port, "/readyz") == (503, "rebalancing\n")
    assert metrics.READY._value.get() == 0


def test_liveness_fails_when_the_event_loop_stops_beating(
        served: tuple[int, metrics.Health]) -> None:
    port, health = served
    assert get(port, "/healthz") == (200, "starting\n")  # no beat yet: still starting up
    health.beat()
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/livez")[0] == 200
    health._beat = time.monotonic() - 45  # a loop stuck for 45 s
    status, body = get(port, "/healthz")
    assert status == 503 and body.startswith("event loop silent for 45 s")


def test_metrics_are_still_served_next_to_the_probes(served: tuple[int, metrics.Health]) -> None:
    port, _ = served
    samples = metrics.scrape(f"http://127.0.0.1:{port}/metrics")
    assert metrics.total(samples, "frontline_build_info") == 1
    assert any(k.startswith("frontline_build_info{") and 'version="' in k for k in samples)


def test_a_taken_port_is_one_readable_error(served: tuple[int, metrics.Health]) -> None:
    port, _ = served
    with pytest.raises(metrics.MetricsError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
        metrics.serve(port, "127.0.0.1")


class FakeConsumer:
    """The three things Progress reads from Faust's consumer."""

    def __init__(self, highwaters: dict[Any, int | None], committed: dict[Any, int]) -> None:
        self.highwaters = highwaters
        self._committed_offset = committed

    def assignment(self) -> set[Any]:
        return set(self.highwaters)

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters[tp]

class _TP(NamedTuple):
    topic: str
    partition: int


def event(topic: str, partition: int, offset: int, timestamp: float) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                   offset=offset, timestamp=timestamp))


def lag(source: str) -> float:
    return metrics.CONSUMER_LAG.labels(source)._value.get()


def assigned(source: str) -> float:
    return metrics.PARTITIONS_ASSIGNED.labels(source)._value.get()


def test_lag_is_highwater_minus_what_was_processed_else_committed() -> None:
    progress = Progress({"p.interactions": "interactions",
                         "p.lesson-completions": "lesson-completions"})
    gate = OffsetGate()  # the pipeline's next offset per partition
    i0, i1, c0 = _TP("p.interactions", 0), _TP("p.interactions", 1), \
        _TP("p.lesson-completions", 0)
    other = _TP("p.employee-state-changelog", 0)  # not an input: ignored
    consumer = FakeConsumer({i0: 100, i1: 40, c0: None, other: 999}, {i1: 25})
    progress.update_lag(consumer, gate.next)
    # i0: nothing processed nor committed -> all 100 behind; i1: committed 25 -> 15; c0: unknown
    assert (lag("interactions"), assigned("interactions")) == (115, 2)
    assert (lag("lesson-completions"), assigned("lesson-completions")) == (0, 1)

    before = metrics.END_TO_END_SECONDS.labels("interactions")._sum.get()
    now = time.time()
    events = [event("p.interactions", 0, n, now - 2.0) for n in range(90)]
    for e in events:
        assert gate.admit(i0, e.message.offset) == gate.ADMIT
    progress.acked("interactions", events)
    assert metrics.END_TO_END_SECONDS.labels("interactions")._sum.get() - before == \
        pytest.approx(180.0, abs=5.0)
    progress.update_lag(consumer, gate.next)
    assert lag("interactions") == (100 - 90) + 15

    gate.forget([i0])  # revoked: back to the committed offset (none) until processed again
    progress.update_lag(consumer, gate.next)
    assert lag("interactions") == 100 + 15
    consumer.highwaters = {c0: 7}  # the interaction partitions went to another worker
    progress.update_lag(consumer, gate.next)
    assert (lag("interactions"), assigned("interactions")) == (0, 0)
    assert (lag("lesson-completions"), assigned("lesson-completions")) == (7, 1)


class FakeKafkaConsumer:
    """What ledger_lag reads from kafka-python's consumer."""

    def __init__(self, highwaters: dict[Any, int | None], positions: dict[Any, int]) -> None:
        self.highwaters, self.positions = highwaters, positions

    def assignment(self) -> set[Any]:
        return set(self.highwaters)

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters[tp]

    def position(self, tp: Any) -> int:
        return self.positions[tp]


def test_ledger_lag_is_highwater_minus_position_by_topic() -> None:
    names = {"p.bonus-awards": "bonus-awards", "p.performance-gaps": "performance-gaps",
             "p.lesson-assignments": "lesson-assignments"}
    a0, a1 = _TP("p.bonus-awards", 0), _TP("p.bonus-awards", 1)
    g0 = _TP("p.performance-gaps", 0)
    unfetched = _TP("p.lesson-assignments", 0)  # no fetch yet: no high watermark, not counted
    consumer = FakeKafkaConsumer({a0: 50, a1: 9, g0: 4, unfetched: None},
                                 {a0: 20, a1: 9, g0: 0, unfetched: 0})
    assert ledger_lag(consumer, names) == {"bonus-awards": 30, "performance-gaps": 4,
                                           "lesson-assignments": 0}
