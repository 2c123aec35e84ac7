"""The worker's HTTP endpoint (/metrics, /healthz, /readyz), the consumer-lag gauges, the broker
watch's judgement and the count of records the broker acknowledged."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from kafka import KafkaAdminClient
from mode.utils.logging import ExtensionFormatter

from agents.pipeline_agent import OffsetGate
from streams import kafka_compat, metrics, topics
from streams.app import PUBLISH_FAILED_EXIT, Progress, Publishing, watch_broker
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.ledger_sink import ledger_lag
from streams.settings import Settings
from streams.topic_admin import BrokerView, BrokerWatch, Verdict, ensure_topics


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


# ---- readiness holds, the broker watch, publishing -------------------------------------------

def test_a_hold_keeps_readiness_down_whatever_the_rebalances_say(
        served: tuple[int, metrics.Health]) -> None:
    port, health = served
    health.set_ready(True, "ok")
    health.hold("broker", "broker unreachable")
    assert get(port, "/readyz") == (503, "broker unreachable\n")
    assert metrics.READY._value.get() == 0
    health.set_ready(True, "ok")  # a rebalance completes meanwhile
    assert get(port, "/readyz") == (503, "broker unreachable\n")
    health.hold("broker", None)
    assert get(port, "/readyz") == (200, "ok\n")
    assert metrics.READY._value.get() == 1


TOPICS = ("in", "out", "changelog")


def view(missing: tuple[str, ...] = (), cluster: str = "c1", **partitions: int) -> BrokerView:
    counts = {t: partitions.get(t, 4) for t in TOPICS if t not in missing}
    return BrokerView(cluster, counts, frozenset(missing))


def test_the_broker_watch_waits_for_an_unreachable_broker_then_gives_up() -> None:
    watch = BrokerWatch(TOPICS, lost_after_s=60, where="the broker at kafka://b:9092")
    assert watch.observe(view(), 0.0) == Verdict(True)
    assert watch.observe(None, 10.0) == Verdict(False)  # down: not ready, still waiting
    assert watch.observe(None, 69.0) == Verdict(False)
    assert watch.observe(view(), 70.0) == Verdict(True)  # back with everything: recovered
    assert watch.observe(None, 100.0) == Verdict(False)  # down again: the clock starts again
    verdict = watch.observe(None, 160.0)
    assert (verdict.reachable, verdict.exit_code) == (False, BrokerWatch.UNREACHABLE_EXIT)
    assert verdict.message == (
        "the broker at kafka://b:9092 has been unreachable for 60 s "
        "(FRONTLINE_BROKER_LOST_EXIT_S=60); exiting so that a restart waits for it and starts "
        "clean")


def test_the_broker_watch_exits_at_once_when_the_broker_lost_the_topics() -> None:
    watch = BrokerWatch(TOPICS, lost_after_s=60)
    assert watch.observe(view(missing=("changelog",)), 0.0) == Verdict(True)  # still starting
    assert watch.observe(view(), 1.0) == Verdict(True)  # the changelog is there too now
    assert watch.observe(None, 2.0) == Verdict(False)
    verdict = watch.observe(view(missing=("out", "changelog")), 3.0)  # a new, empty broker
    assert (verdict.reachable, verdict.exit_code) == (True, BrokerWatch.DATA_LOST_EXIT)
    assert verdict.message == (
        "the broker no longer has this worker's topics as they were (changelog, out gone: a "
        "new or wiped broker, their records and committed offsets lost); exiting so that a "
        "restart creates the topics and starts from the broker's offsets")
    # recreated behind the worker's back with another partition count, or another cluster
    assert "partition counts changed: in 4 -> 1" in watch.observe(view(**{"in": 1}), 4.0).message
    assert watch.observe(view(cluster="c2"), 5.0).exit_code == BrokerWatch.DATA_LOST_EXIT
    assert watch.observe(view(cluster=None), 6.0) == Verdict(True)  # no id: nothing to compare

    starting = BrokerWatch(TOPICS, lost_after_s=60)  # lost before its changelog was created
    assert starting.observe(view(missing=("changelog",)), 0.0) == Verdict(True)
    verdict = starting.observe(view(missing=("in", "changelog")), 1.0)
    assert verdict.exit_code == BrokerWatch.DATA_LOST_EXIT and "(in gone: " in verdict.message


class FakeFuture:
    def __init__(self, done: bool = True, error: BaseException | None = None,
                 cancelled: bool = False) -> None:
        self._done, self.error, self._cancelled = done, error, cancelled

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def exception(self) -> BaseException | None:
        return self.error


def published(label: str) -> float:
    return metrics.PUBLISHED.labels(label)._value.get()


def test_publishing_counts_acknowledged_records_and_knows_the_oldest_waiting() -> None:
    pub = Publishing({"p.execution-scores": "execution-scores", "p.state": "changelog"})
    before = published("execution-scores"), published("changelog")
    assert pub.collect(time.monotonic()) == 0.0
    entries = [pub.sending(t) for t in ("p.execution-scores", "p.state", "p.execution-scores",
                                        "p.execution-scores", "p.dead-letters")]
    first, second, third, fourth, fifth = entries
    pub.sent(first, FakeFuture())
    pub.sent(second, FakeFuture())
    pub.sent(third, FakeFuture(error=RuntimeError("refused")))
    late = FakeFuture(done=False)
    pub.sent(fourth, late)
    pub.refused(fifth)  # the producer refused it outright
    first[0] = time.monotonic() - 50  # handed over 50 s ago
    fourth[0] = time.monotonic() - 30
    assert 29 < pub.collect(time.monotonic()) < 35  # the fourth still waits
    assert (published("execution-scores"), published("changelog")) == (before[0] + 1,
                                                                      before[1] + 1)
    late._done = True
    assert pub.collect(time.monotonic()) == 0.0
    assert published("execution-scores") == before[0] + 2


class Stopped(BaseException):
    """What the watch's `stop` raises in these tests instead of ending the process (a
    BaseException: like os._exit, nothing in the watch may catch it)."""


def stop(code: int, message: str) -> None:
    raise Stopped(code, message)


def run_watch(settings: Settings, names: list[str], publishing: Publishing,
              health: metrics.Health, during: Any = None) -> tuple[int, str]:
    """Run watch_broker until it stops the worker; `during(loop_seconds)` runs in a thread."""
    async def main() -> tuple[int, str]:
        watch = watch_broker(settings, names, publishing, health, stop, every_s=0.2,
                             timeout_s=1.0)
        if during is not None:
            asyncio.get_running_loop().run_in_executor(None, during)
        try:
            await asyncio.wait_for(watch(), 20)
        except Stopped as stopped:
            return stopped.args  # type: ignore[return-value]
        raise AssertionError("the watch returned")

    return asyncio.run(main())


def test_the_watch_stops_the_worker_when_its_topics_vanish(broker: EmbeddedBroker) -> None:
    prefix = f"watch-{uuid.uuid4().hex[:8]}."
    settings = Settings.load({"broker": broker.url, "topic_prefix": prefix,
                              "partitions": 2}, environ={})
    names = [settings.topic(t) for t in topics.ALL]
    ensure_topics(settings)
    health = metrics.Health()
    health.set_ready(True, "ok")

    seen = []

    def delete_one() -> None:
        time.sleep(1.0)  # the watch has seen every topic by then
        seen.append((health.ready(), metrics.BROKER_UP._value.get()))
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            admin.delete_topics([names[-1]])
        finally:
            admin.close()

    code, message = run_watch(settings, names, Publishing({}), health, delete_one)
    assert seen == [((True, "ok"), 1)]
    assert code == BrokerWatch.DATA_LOST_EXIT
    assert f"({names[-1]} gone: a new or wiped broker" in message


def test_the_watch_holds_readiness_then_gives_up_on_an_unreachable_broker() -> None:
    settings = Settings.load({"broker": f"kafka://127.0.0.1:{free_port()}",
                              "broker_lost_exit_s": 1.5}, environ={})
    health = metrics.Health()
    health.set_ready(True, "ok")
    seen = []

    def watch_readiness() -> None:
        time.sleep(0.5)
        seen.append((health.ready(), metrics.BROKER_UP._value.get()))

    started = time.monotonic()
    code, message = run_watch(settings, ["t"], Publishing({}), health, watch_readiness)
    assert seen == [((False, "broker unreachable"), 0)]
    assert code == BrokerWatch.UNREACHABLE_EXIT
    assert re.search(r"has been unreachable for \d+ s \(FRONTLINE_BROKER_LOST_EXIT_S=1.5\)",
                     message), message
    assert 1.5 <= time.monotonic() - started < 5


def test_the_watch_stops_the_worker_when_a_record_waits_too_long_for_its_ack(
        broker: EmbeddedBroker) -> None:
    settings = Settings.load({"broker": broker.url, "publish_timeout_s": 0.5}, environ={})
    publishing = Publishing({})
    publishing.sending("t")  # being handed to the producer, which never returns
    code, message = run_watch(settings, ["t"], publishing, metrics.Health())
    assert code == PUBLISH_FAILED_EXIT
    assert message.startswith("the broker has not acknowledged a record for ")
    assert "(FRONTLINE_PUBLISH_TIMEOUT_S=0.5); stopping without committing its batch" in message


def test_repeated_library_errors_become_one_line_every_few_seconds() -> None:
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    logger = logging.getLogger("aiokafka.test-repeats")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    logger.addFilter(kafka_compat.RepeatedLinesFilter(every_s=0.3))
    try:
        for _ in range(75):  # a second of a broker being down
            logger.error("Unable connect to node with id %s: %s", 111, "refused")
            logger.error("Unable to update metadata from %s", [111])
            logger.info("not a warning: never held back")
        time.sleep(0.35)
        logger.error("Unable connect to node with id %s: %s", 111, "refused")
    finally:
        logger.filters.clear()
        logger.handlers.clear()
    # as the worker's log handler (mode's formatter) writes them
    formatter = ExtensionFormatter(fmt="%(message)s")
    lines = [formatter.format(r) for r in kept if r.levelno >= logging.WARNING]
    assert lines[:2] == ["Unable connect to node with id 111: refused",
                         "Unable to update metadata from [111]"]
    assert len(lines) == 3 and re.fullmatch(
        r"Unable connect to node with id 111: refused \(and 74 more like it in the last \d s\)",
        lines[2]), lines
    assert sum(r.levelno == logging.INFO for r in kept) == 75


def test_the_workers_clients_never_create_a_topic_by_asking_for_it() -> None:
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest_v5

    kafka_compat.apply(Settings.load(environ={}))
    request = aiokafka.client.MetadataRequest(["lost-topic"]).build(MetadataRequest_v5)
    assert request.allow_auto_topic_creation is False
