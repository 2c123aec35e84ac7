"""End-to-end harness: one real `frontline worker` per test against the session broker, a
producer for the input topics, a reader of every output topic, the worker's /metrics, and an
oracle (the pure decision core fed the same records in the same order) that says exactly which
records the pipeline must publish.

Every test gets its own topic prefix, app id (consumer group and changelog), data directory and
metrics port, so tests never see each other's records or state.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.record_processor import RecordProcessor
from models.events import record_id
from models.playbook import load_playbook
from streams import metrics, topics
from streams.demo import start_worker, stop_process
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.topic_admin import partition_counts

WAIT_S = 45.0  # the longest any condition may take to become true
SETTLE_S = 1.5  # after the expected records arrived: how long nothing more may arrive
_COUNTER = itertools.count(1)
DAY1 = datetime.fromisoformat("2026-11-02T09:00:00+00:00")  # the first day of the crafted input
_QA_ITEMS = ("greeting", "verified_identity", "empathy", "accurate_info", "offered_more_help",
             "proper_closing")


# ---- waiting ---------------------------------------------------------------------------------

def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S,
               explain: Callable[[], str] | None = None) -> None:
    """Poll `condition` until it holds; fail the test naming `what` when it never does."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = f"; {explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(0.1)


# ---- input -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sent:
    """One record produced to an input topic, with where the broker put it."""

    source: str  # contract name: interactions / lesson-completions
    key: bytes | None
    value: bytes
    partition: int
    offset: int


class InteractionMaker:
    """Valid interaction records (as JSON bytes) for one employee at increasing event times."""

    def __init__(self, employee_id: str, team_id: str = "team-e2e",
                 start: datetime = DAY1,
                 step: timedelta = timedelta(minutes=10), tag: str = "") -> None:
        self.employee_id = employee_id
        self.team_id = team_id
        self.clock = start
        self.step = step
        self.tag = tag or uuid.uuid4().hex[:6]
        self.n = 0

    def __call__(self, *, fail: tuple[str, ...] = (), csat: int | None = None,
                 resolved: bool | None = True, hold_s: float = 0.0,
                 at: datetime | None = None, **extra: Any) -> bytes:
        self.n += 1
        self.clock = at if at is not None else self.clock + self.step
        record: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"evt-{self.employee_id}-{self.tag}-{self.n}",
            "interaction_id": f"int-{self.employee_id}-{self.tag}-{self.n}",
            "employee_id": self.employee_id,
            "team_id": self.team_id,
            "channel": "voice",
            "started_at": (self.clock - timedelta(minutes=6)).isoformat(),
            "ended_at": self.clock.isoformat(),
            "wait_s": 20.0,
            "talk_s": 330.0,
            "hold_s": hold_s,
            "wrap_s": 30.0,
            "transfers": 0,
            "resolved": resolved,
            "qa": {item: item not in fail for item in _QA_ITEMS},
            "csat": csat,
        }
        record.update(extra)
        return json.dumps(record).encode()


def completion(employee_id: str, assignment_id: str, event_id: str, completed_at: datetime,
               lesson_id: str | None = None) -> bytes:
    return json.dumps({
        "schema_version": 1, "event_id": event_id, "assignment_id": assignment_id,
        "employee_id": employee_id, "lesson_id": lesson_id,
        "completed_at": completed_at.isoformat(), "score": 88.5,
    }).encode()


# ---- the oracle ------------------------------------------------------------------------------

@dataclass
class Expected:
    """What the oracle says one input record leads to."""

    outcome: str
    records: dict[str, dict[str, bytes]]  # contract topic -> id -> exact value bytes
    error_type: str | None = None
    error_message: str | None = None


class _States(dict[str, EmployeeState]):
    """The oracle's state store: a dict, with the store protocol's put()."""

    def put(self, key: str, state: EmployeeState, partition: int = 0) -> None:
        self[key] = state


class Oracle:
    """The pure decision core fed what the test produces, in the same order per employee.

    The worker must publish byte for byte what this publishes: same ids, same values."""

    def __init__(self) -> None:
        self.playbook = load_playbook(None)
        self.states = _States()
        # One partition: the processor then never forwards; routing is the worker's business.
        self.processor = RecordProcessor(DecisionEngine(self.playbook), self.states, lambda _: 1)
        self.outputs: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (source, outcome)
        self.dead: list[tuple[Sent, Expected]] = []

    def feed(self, sent: Sent) -> Expected:
        result = self.processor.process(sent.source, sent.source, 0, sent.offset, sent.key,
                                        sent.value)
        if result.state is not None and result.employee_id is not None:
            self.states[result.employee_id] = result.state
        produced: dict[str, dict[str, bytes]] = defaultdict(dict)
        published = result.outgoing if result.outcome == "processed" else []
        for record, out in zip(result.records, published, strict=True):
            assert out.topic == topics.topic_of(record)
            produced[out.topic][record_id(record)] = out.value
            self.outputs[out.topic][record_id(record)] = out.value
        expected = Expected(result.outcome, dict(produced))
        if result.outcome == "dead_lettered":
            hdrs = dict(result.outgoing[0].headers or [])
            expected.error_type = hdrs["frontline.error.type"].decode()
            expected.error_message = hdrs["frontline.error.message"].decode()
            self.dead.append((sent, expected))
        self.outcomes[(sent.source, result.outcome)] += 1
        return expected

    def counts(self) -> dict[str, int]:
        """Records expected on each output topic (dead letters included)."""
        out = {t: len(self.outputs.get(t, {})) for t in topics.OUTPUTS}
        out[topics.DEAD_LETTERS] = len(self.dead)
        return out

    def records(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.outputs.get(topic, {}).values()]


# ---- output ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Out:
    """One record read from an output topic."""

    topic: str  # contract name
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.value)
        return parsed

    @property
    def id(self) -> str:
        """The id a consumer dedupes by (for dead letters: where the input record was)."""
        if self.topic == topics.DEAD_LETTERS:
            h = self.headers
            return "/".join(h.get(k, b"?").decode() for k in (
                "frontline.source.topic", "frontline.source.partition",
                "frontline.source.offset"))
        return topics.record_key(self.topic, self.json)


class OutputReader:
    """Reads every partition of every output topic from offset 0 on a background thread.

    It seeks to 0 rather than asking the broker for offsets: the embedded broker's answer to
    "latest offset" is wrong, and nothing here depends on it."""

    def __init__(self, settings: Settings) -> None:
        self._names = {settings.topic(t): t for t in topics.OUTPUTS}
        self._records: list[Out] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
            client_id="frontline-e2e-reader")
        self.partitions = self._partitions(self._consumer)
        assigned = [TopicPartition(name, p) for name in self._names
                    for p in range(self.partitions[name])]
        self._consumer.assign(assigned)
        for tp in assigned:
            self._consumer.seek(tp, 0)
        self._thread = threading.Thread(target=self._run, name="e2e-output-reader", daemon=True)
        self._thread.start()

    def _partitions(self, consumer: KafkaConsumer) -> dict[str, int]:
        deadline = time.monotonic() + 20
        counts: dict[str, int] = {}
        while len(counts) < len(self._names):
            for name in self._names:
                parts = consumer.partitions_for_topic(name)
                if parts:
                    counts[name] = len(parts)
            if len(counts) < len(self._names):
                if time.monotonic() > deadline:
                    pytest.fail(f"output topics not on the broker: {sorted(self._names)}")
                time.sleep(0.2)
        return counts

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batches = self._consumer.poll(timeout_ms=100, max_records=5000)
                fresh = [Out(self._names[tp.topic], m.partition, m.offset, m.key, m.value or b"",
                             {k: v for k, v in (m.headers or [])})
                         for tp, batch in batches.items() for m in batch]
                if fresh:
                    with self._lock:
                        self._records.extend(fresh)
        except BaseException as exc:  # noqa: BLE001 - reported by the next read
            self._error = exc
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def all(self) -> list[Out]:
        if self._error is not None:
            raise AssertionError(f"the output reader died: {self._error!r}")
        with self._lock:
            return list(self._records)

    def of(self, topic: str) -> list[Out]:
        return [r for r in self.all() if r.topic == topic]

    def counts(self) -> dict[str, int]:
        seen = Counter(r.topic for r in self.all())
        return {t: seen[t] for t in topics.OUTPUTS}

    def wait_for(self, expected: dict[str, int], what: str, timeout_s: float = WAIT_S) -> None:
        """Wait until each topic holds at least `expected` records, then check that no more
        arrive for SETTLE_S: the exact counts must hold."""
        wait_until(lambda: all(self.counts()[t] >= n for t, n in expected.items()),
                   f"{what}: output records {expected}", timeout_s,
                   lambda: f"seen so far {self.counts()}")
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            now = self.counts()
            extra = {t: now[t] for t, n in expected.items() if now[t] != n}
            assert not extra, f"{what}: more output records than expected: " \
                              f"expected {expected}, got {now}"
            time.sleep(0.1)


# ---- one pipeline per test -------------------------------------------------------------------

@dataclass
class Pipeline:
    """A worker on its own topics/app id, with a producer and an output reader."""

    broker: EmbeddedBroker
    workdir: Path
    prefix: str = ""
    app_id: str = ""
    settings: Settings = field(init=False)
    worker: Popen[bytes] | None = None
    metrics_port: int = 0
    logs: list[Path] = field(default_factory=list)
    _producer: KafkaProducer | None = None
    _reader: OutputReader | None = None

    def __post_init__(self) -> None:
        tag = f"{next(_COUNTER)}-{uuid.uuid4().hex[:8]}"
        self.prefix = self.prefix or f"e2e-{tag}."
        self.app_id = self.app_id or f"frontline-e2e-{tag}"
        self.settings = Settings.load({"broker": self.broker.url, "topic_prefix": self.prefix,
                                       "app_id": self.app_id}, environ={})

    # worker
    def start_worker(self) -> Popen[bytes]:
        assert self.worker is None or self.worker.poll() is not None, "a worker is running"
        self.metrics_port = free_port()
        log = self.workdir / f"worker-{len(self.logs) + 1}.log"
        self.logs.append(log)
        # settings of the developer's shell (an empty value counts as unset) must not leak in
        env = {k: "" for k in os.environ if k.startswith("FRONTLINE_")}
        env.update({"FRONTLINE_TOPIC_PREFIX": self.prefix, "FRONTLINE_APP_ID": self.app_id})
        self.worker = start_worker(self.broker.url, self.metrics_port, self.workdir / "data",
                                   log, env)
        return self.worker

    def stop_worker(self) -> int:
        assert self.worker is not None
        return stop_process(self.worker)

    def log_tail(self, lines: int = 15) -> str:
        if not self.logs:
            return "(no worker log)"
        text = self.logs[-1].read_text(errors="replace").strip().splitlines()
        return f"worker log {self.logs[-1]} ends with:\n" + "\n".join(text[-lines:])

    # topics
    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    @property
    def reader(self) -> OutputReader:
        """Started on first use (the worker creates the topics at start)."""
        if self._reader is None:
            self._reader = OutputReader(self.settings)
        return self._reader

    def partitions_of(self, name: str) -> int:
        """Partition count of a topic (as the broker's metadata says)."""
        name = self.topic(name)
        return partition_counts(self.settings.bootstrap_servers, [name],
                                time.monotonic() + 20)[name]

    def produce(self, records: list[tuple[bytes | None, bytes]],
                source: str = topics.INTERACTIONS, partition: int | None = None) -> list[Sent]:
        """Produce (key, value) records in order and return where each one landed."""
        if self._producer is None:
            # The default (since kafka-python 2.1) is an idempotent producer, which Tansu
            # does not offer; one request in flight keeps the order on retries.
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.bootstrap_servers, acks="all", linger_ms=5,
                enable_idempotence=False, max_in_flight_requests_per_connection=1,
                client_id="frontline-e2e-producer")
        topic = self.topic(source)
        futures = [self._producer.send(topic, key=k, value=v, partition=partition)
                   for k, v in records]
        self._producer.flush(30)
        sent = []
        for (key, value), future in zip(records, futures, strict=True):
            meta = future.get(timeout=30)
            sent.append(Sent(source, key, value, meta.partition, meta.offset))
        return sent

    # metrics
    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> dict[str, float]:
        return metrics.scrape(self.metrics_url)

    def metric(self, name: str, **labels: str) -> float:
        return metrics.total(self.metrics(), name, **labels)

    def events(self, source: str = topics.INTERACTIONS) -> Counter[str]:
        """frontline_events_total by outcome for one input topic."""
        samples = self.metrics()
        return Counter({o: int(metrics.total(samples, "frontline_events_total", topic=source,
                                             outcome=o))
                        for o in ("processed", "duplicate", "dead_lettered", "forwarded")})

    def wait_events(self, expected: dict[str, int], source: str = topics.INTERACTIONS,
                    what: str = "the worker to handle the input") -> Counter[str]:
        """Wait until frontline_events_total reaches `expected` per outcome; return them."""
        wait_until(lambda: all(self.events(source)[o] >= n for o, n in expected.items()),
                   f"{what}: events {expected} on {source}", WAIT_S,
                   lambda: f"metrics say {dict(self.events(source))}; {self.log_tail()}")
        return self.events(source)

    def wait_handled(self, n: int, source: str = topics.INTERACTIONS,
                     what: str = "the worker to handle the input") -> Counter[str]:
        """Wait until at least `n` records of `source` were handled, whatever the outcome
        (so that a wrong outcome fails at once, on the counts, not on a timeout)."""
        wait_until(lambda: sum(self.events(source).values()) >= n,
                   f"{what}: {n} records handled on {source}", WAIT_S,
                   lambda: f"metrics say {dict(self.events(source))}; {self.log_tail()}")
        return self.events(source)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._producer is not None:
            self._producer.close(5)
        if self.worker is not None:
            stop_process(self.worker)
