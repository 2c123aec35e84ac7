"""The ledger writer: a process of its own (so database waits never touch the Faust event
loop) that reads the decision topics (awards, gaps, assignments, lesson effects) and lesson
completions and writes them to the ledger in batches. Offsets are committed only after the
batch's transaction has committed; while the database is unreachable it backs off and retries
the same batch, so nothing is lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from streams import metrics, topics
from streams.ledger_schema import check_schema, create_ledger_engine
from streams.ledger_store import LedgerRecord, LedgerStore, parse_records
from streams.settings import Settings

log = logging.getLogger("frontline.ledger")

SOURCES = (topics.BONUS_AWARDS, topics.PERFORMANCE_GAPS, topics.LESSON_ASSIGNMENTS,
           topics.LESSON_EFFECTS, topics.LESSON_COMPLETIONS)

ROWS = Counter("frontline_ledger_records", "Records written to the ledger, by source topic",
               ["topic"], registry=metrics.REGISTRY)
SKIPPED = Counter("frontline_ledger_skipped", "Records the ledger could not read (the worker "
                  "dead-letters malformed input), by source topic", ["topic"],
                  registry=metrics.REGISTRY)
WRITE_FAILURES = Counter("frontline_ledger_write_failures", "Ledger batches that failed to "
                         "write and were retried", registry=metrics.REGISTRY)
LAG = Gauge("frontline_ledger_lag", "Records on a topic the ledger writer reads that are not in "
            "the ledger yet (high watermark minus the writer's position)", ["topic"],
            registry=metrics.REGISTRY)
BACKLOG_WAIT = Gauge("frontline_ledger_retrying", "1 while the ledger writer is backing off "
                     "from an unreachable database", registry=metrics.REGISTRY)


@dataclass
class SinkConfig:
    batch_max: int = 2000
    poll_ms: int = 200
    backoff_start_s: float = 0.5
    backoff_max_s: float = 15.0
    sweep_every_s: float = 60.0
    lag_every_s: float = 5.0


class LedgerSink:
    def __init__(self, settings: Settings, config: SinkConfig | None = None) -> None:
        self.settings = settings
        self.config = config or SinkConfig()
        self.engine = create_ledger_engine(settings.database_url)
        check_schema(self.engine)  # refuse to start on an out-of-date schema
        self.store = LedgerStore(self.engine)
        self.names = {settings.topic(name): name for name in SOURCES}
        self.consumer = KafkaConsumer(
            *self.names, bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-ledger", enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_wait_ms,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.heartbeat_s * 1000),
            max_poll_records=self.config.batch_max)
        self._last_sweep = self._last_lag = 0.0
        for name in SOURCES:
            LAG.labels(name)  # a series from the start
        # what /readyz answers (set on this thread, read by the metrics thread)
        self._assigned = self._retrying = False
        metrics.HEALTH.ready_check = self._ready

    def _ready(self) -> tuple[bool, str]:
        """Ready once the consumer has partitions and while the database takes writes."""
        if self._retrying:
            return False, "database unreachable, retrying"
        if not self._assigned:
            return False, "waiting for partitions"
        return True, "ok"

    def run(self, stop: Callable[[], bool]) -> None:
        try:
            while not stop():
                self.step(stop)
        finally:
            self.consumer.close(autocommit=False)
            self.engine.dispose()

    def step(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Poll once, write what came, commit; returns how many records were written."""
        metrics.HEALTH.beat()
        polled = self.consumer.poll(timeout_ms=self.config.poll_ms,
                                    max_records=self.config.batch_max)
        self._assigned = bool(self.consumer.assignment())
        records: list[LedgerRecord] = []
        per_topic: dict[str, int] = {}
        for tp, messages in polled.items():
            name = self.names[tp.topic]
            for m in messages:
                try:
                    records.extend(parse_records([(name, m.value or b"")]))
                    per_topic[name] = per_topic.get(name, 0) + 1
                except ValidationError:
                    SKIPPED.labels(name).inc()
        if records:
            self._write(records, stop)
        if polled:
            try:
                self.consumer.commit()  # only after the batch is durable
            except CommitFailedError as exc:  # the group moved on while we waited: the
                # records come again and are ignored by id, so nothing is lost or doubled
                log.warning("ledger offsets not committed: %s", exc)
        for name, n in per_topic.items():
            ROWS.labels(name).inc(n)
        self._maybe_sweep()
        self._maybe_update_lag()
        return len(records)

    def _maybe_update_lag(self) -> None:
        """frontline_ledger_lag: after a step everything polled is written, so the position is
        what the ledger holds; the high watermark comes from the last fetch."""
        now = time.monotonic()
        if now - self._last_lag < self.config.lag_every_s:
            return
        self._last_lag = now
        for name, behind in ledger_lag(self.consumer, self.names).items():
            LAG.labels(name).set(behind)

    def _write(self, records: list[LedgerRecord], stop: Callable[[], bool]) -> None:
        delay = self.config.backoff_start_s
        while True:
            try:
                self.store.write(records)
                self._retrying = False
                BACKLOG_WAIT.set(0)
                return
            except (OperationalError, DBAPIError) as exc:
                WRITE_FAILURES.inc()
                self._retrying = True
                BACKLOG_WAIT.set(1)
                reason = str(getattr(exc, "orig", exc)).splitlines()[0]
                log.warning("ledger write failed (%s); retrying %d records in %.1f s",
                            reason, len(records), delay)
                if stop():
                    raise
                metrics.HEALTH.beat()  # waiting on the database is not being stuck
                time.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)

    def _maybe_sweep(self) -> None:
        now = time.time()
        if now - self._last_sweep < self.config.sweep_every_s:
            return
        self._last_sweep = now
        try:
            marked = self.store.sweep_overdue(datetime.fromtimestamp(now, UTC))
        except (OperationalError, DBAPIError):
            return  # the next write retries; the sweep waits for the next round
        if marked:
            log.info("marked %d lesson assignments overdue", marked)


def ledger_lag(consumer: Any, names: dict[str, str]) -> dict[str, int]:
    """Records behind, by source (contract name), over the consumer's assigned partitions whose
    high watermark a fetch has told."""
    lag = dict.fromkeys(names.values(), 0)
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag[names[tp.topic]] += max(0, highwater - consumer.position(tp))
    return lag
