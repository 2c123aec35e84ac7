"""The ledger writer: a process of its own (so database waits never touch the Faust event
loop) that reads the decision topics (awards, gaps, assignments, lesson effects) and lesson
completions and writes them to the ledger in batches. Offsets are committed only after the
batch's transaction has committed; while the database is unreachable it backs off and retries
the same batch, so nothing is lost.

No single record can stop or stall it. A record it cannot read or turn into rows, and one the
database refuses (found by bisecting the batch), is kept in the ledger's `quarantine` table
with the reason, and the others are written. What tells such a poison record from an outage:

- an outage is retried whole, with back-off: the connection failed or was lost, the server is
  shutting down, a timeout, a lock, a missing table or column (PostgreSQL SQLSTATE classes
  other than 22, 23 and 54; SQLite errors other than constraint, too big and mismatch);
- an error about the data (PostgreSQL classes 22 data exception, 23 integrity constraint, 54
  program limit; SQLite constraint/too big/mismatch; a ValueError, OverflowError ... on the
  way to the driver) makes the writer bisect the batch, each half in its own transaction, until
  each failing record is alone; every other record is written (the store's writes are
  idempotent, so writing parts of a batch again is safe);
- a lone failing record is quarantined only if a known-good record of the same kind writes in
  a rolled-back probe transaction, and only while no more than `max_poison_per_batch` records
  of the batch failed with the same kind of error: otherwise the database refuses a whole kind
  of record (a wrong schema, say), which is an outage too.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
)
from sqlalchemy.exc import (
    TimeoutError as PoolTimeoutError,
)

from models.dead_letters import explain_validation
from streams import ledger_store, metrics, topics
from streams.embedded_broker import bootstrap_timeout
from streams.ledger_schema import check_schema, create_ledger_engine
from streams.ledger_store import (
    LedgerRecord,
    LedgerStore,
    Unstorable,
    check_record,
    parse_record,
    probe_record,
    quarantine_row,
)
from streams.settings import Settings

log = logging.getLogger("frontline.ledger")

SOURCES = (topics.BONUS_AWARDS, topics.PERFORMANCE_GAPS, topics.LESSON_ASSIGNMENTS,
           topics.LESSON_EFFECTS, topics.LESSON_COMPLETIONS)

ROWS = Counter("frontline_ledger_records", "Records written to the ledger, by source topic",
               ["topic"], registry=metrics.REGISTRY)
SKIPPED = Counter("frontline_ledger_skipped", "Records the ledger could not read as their "
                  "topic's contract (kept in the quarantine), by source topic", ["topic"],
                  registry=metrics.REGISTRY)
QUARANTINED = Counter("frontline_ledger_quarantined", "Records the ledger writer could not "
                      "store and kept in its quarantine table, by source topic and reason "
                      "(overflow, invalid_text, out_of_range, unparseable, ...)",
                      ["topic", "reason"], registry=metrics.REGISTRY)
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
    # more records of one batch than this refused with the same kind of error: not poison
    # records but a database that refuses them all (see the module's docstring)
    max_poison_per_batch: int = 10


class Delivered(Protocol):
    """A record as the consumer hands it over (kafka-python's ConsumerRecord)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RetryLater(Exception):
    """The batch cannot be written now: the database is unreachable (`unreachable`), or it
    refuses records of every kind alike. Back off and retry the whole batch."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


@dataclass(frozen=True)
class _Item:
    message: Delivered
    name: str  # the contract topic
    record: LedgerRecord


class BatchWriter:
    """Writes one poll's records into the ledger, quarantining those it cannot store (see the
    module's docstring); the Kafka-free half of the writer."""

    def __init__(self, store: LedgerStore, names: dict[str, str],
                 max_poison_per_batch: int = 10) -> None:
        self.store = store
        self.names = names  # topic as named on the broker -> contract topic
        self.max_poison_per_batch = max_poison_per_batch

    def write(self, messages: Sequence[Delivered]) -> collections.Counter[str]:
        """Write the records, keep the poison ones in the quarantine; returns how many records
        of each contract topic went to the ledger. Raises RetryLater when nothing can be
        decided now (then nothing is lost: the caller retries the same messages); writing the
        same messages again is safe."""
        items: list[_Item] = []
        poison: list[tuple[Delivered, str, BaseException]] = []
        for m in messages:
            name = self.names[m.topic]
            try:
                record = parse_record(name, m.value or b"")
                check_record(record)
            except Exception as exc:  # noqa: BLE001 - whatever a record does, it is kept
                poison.append((m, name, exc))
            else:
                items.append(_Item(m, name, record))
        failed: list[tuple[_Item, BaseException]] = []
        if items:
            self._bisect(items, failed, set())
        poison += [(item.message, item.name, exc) for item, exc in failed]
        if poison:
            self._quarantine(poison)
        refused = {id(item) for item, _ in failed}
        return collections.Counter(i.name for i in items if id(i) not in refused)

    def _bisect(self, items: list[_Item], failed: list[tuple[_Item, BaseException]],
                probed: set[tuple[type, str]]) -> None:
        """Write `items` in one transaction; if the database refuses them for their data,
        write each half in its own, down to the single records it refuses (into `failed`)."""
        metrics.HEALTH.beat()
        try:
            self.store.write([i.record for i in items])
            return
        except Exception as exc:  # sorted below: an outage or a poison record
            if is_outage(exc):
                raise RetryLater(one_line(exc), unreachable=True) from exc
            error = exc
        if len(items) > 1:
            half = len(items) // 2
            self._bisect(items[:half], failed, probed)
            self._bisect(items[half:], failed, probed)
            return
        item, kind = items[0], error_kind(error)
        alike = 1 + sum(error_kind(e) == kind for _, e in failed)
        if alike > self.max_poison_per_batch:
            raise RetryLater(f"{alike} records of one batch refused ({kind}: "
                             f"{one_line(error)}), taken for a database fault",
                             unreachable=False) from error
        sort = (type(item.record), str(getattr(item.record, "status", "")))
        if sort not in probed:
            try:
                self.store.probe([probe_record(item.record)])
            except Exception as exc:  # the database refuses good records too
                raise RetryLater(f"a known-good {item.name} record is refused too "
                                 f"({one_line(exc)})", unreachable=is_outage(exc)) from exc
            probed.add(sort)
        failed.append((item, error))

    def _quarantine(self, poison: list[tuple[Delivered, str, BaseException]]) -> None:
        now = datetime.now(UTC)
        rows = [quarantine_row(topic=m.topic, partition=m.partition, offset=m.offset,
                               contract_topic=name, key=m.key, value=m.value,
                               error_type=error_type(exc), kind=error_kind(exc),
                               reason=error_reason(exc), at=now)
                for m, name, exc in poison]
        try:
            new = self.store.quarantine(rows)
        except Exception as exc:  # its rows are always storable: not poison
            raise RetryLater(one_line(exc), unreachable=is_outage(exc)) from exc
        for row in rows:
            where = (row["topic"], row["kafka_partition"], row["kafka_offset"])
            if where not in new:
                continue  # re-delivered: quarantined (and counted) before
            QUARANTINED.labels(row["contract_topic"], row["kind"]).inc()
            if row["kind"] == ledger_store.UNPARSEABLE:
                SKIPPED.labels(row["contract_topic"]).inc()
            log.warning("ledger quarantined %s partition %d offset %d (%s): %s",
                        row["contract_topic"], row["kafka_partition"], row["kafka_offset"],
                        row["kind"], row["reason"])


# PostgreSQL SQLSTATE classes that are about the data: data exception, integrity constraint
# violation, program limit exceeded (a value too big for an index, say)
_DATA_SQLSTATE_CLASSES = ("22", "23", "54")
_DATA_SQLITE_ERRORS = ("SQLITE_CONSTRAINT", "SQLITE_TOOBIG", "SQLITE_MISMATCH")


def is_outage(exc: BaseException) -> bool:
    """True when the database rather than the records is at fault: retry the batch as it is.
    False for an error about the data the records carry."""
    if isinstance(exc, PoolTimeoutError | DisconnectionError | OSError):
        return True
    if not isinstance(exc, DBAPIError):
        return False  # raised on the way to the driver: about a value
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        return state[:2] not in _DATA_SQLSTATE_CLASSES
    name = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return not name.startswith(_DATA_SQLITE_ERRORS)
    # psycopg's own checks (a NUL in a text) have no SQLSTATE
    return not isinstance(exc, DataError | IntegrityError)


_KIND_OF_SQLSTATE = {"22001": ledger_store.TOO_LONG, "22003": ledger_store.OUT_OF_RANGE,
                     "22008": ledger_store.OUT_OF_RANGE, "22021": ledger_store.INVALID_TEXT,
                     "22P05": ledger_store.INVALID_TEXT, "22P02": ledger_store.INVALID_VALUE}


def error_kind(exc: BaseException) -> str:
    """The short kind of a record's error: the quarantine's `kind` and the metric's label."""
    if isinstance(exc, Unstorable):
        return exc.kind
    if isinstance(exc, ValidationError):
        return ledger_store.UNPARSEABLE
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state:
        if state in _KIND_OF_SQLSTATE:
            return _KIND_OF_SQLSTATE[state]
        if state.startswith("23"):
            return ledger_store.CONSTRAINT
        return ledger_store.TOO_LONG if state.startswith("54") else ledger_store.INVALID_VALUE
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        if name.startswith("SQLITE_CONSTRAINT"):
            return ledger_store.CONSTRAINT
        return ledger_store.TOO_LONG if name == "SQLITE_TOOBIG" else ledger_store.INVALID_VALUE
    if isinstance(orig, OverflowError):
        return ledger_store.OVERFLOW
    if isinstance(orig, UnicodeError) or "NUL" in str(orig):
        return ledger_store.INVALID_TEXT
    if isinstance(exc, IntegrityError):
        return ledger_store.CONSTRAINT
    if isinstance(exc, DBAPIError) or isinstance(orig, ValueError):
        return ledger_store.INVALID_VALUE
    return ledger_store.INTERNAL_ERROR


def error_type(exc: BaseException) -> str:
    """The class name of the error (the driver's, for a database error)."""
    if isinstance(exc, Unstorable):
        return exc.error_type
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return type(orig).__name__


def error_reason(exc: BaseException) -> str:
    """One line on what was wrong with the record."""
    if isinstance(exc, Unstorable):
        return exc.reason
    if isinstance(exc, ValidationError):
        return explain_validation(exc).message
    return one_line(exc)


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (a database error: the driver's, without the
    statement)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


class LedgerSink:
    def __init__(self, settings: Settings, config: SinkConfig | None = None) -> None:
        self.settings = settings
        self.config = config or SinkConfig()
        self.engine = create_ledger_engine(settings.database_url)
        check_schema(self.engine)  # refuse to start on an out-of-date schema
        self.store = LedgerStore(self.engine)
        self.names = {settings.topic(name): name for name in SOURCES}
        self.writer = BatchWriter(self.store, self.names, self.config.max_poison_per_batch)
        self.consumer = KafkaConsumer(
            *self.names, bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-ledger", enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=settings.fetch_wait_ms,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.heartbeat_s * 1000),
            max_poll_records=self.config.batch_max,
            **bootstrap_timeout(KafkaConsumer, int(settings.connect_timeout_s * 1000)))
        self._last_sweep = self._last_lag = 0.0
        for name in SOURCES:
            LAG.labels(name)  # a series from the start
        # what /readyz answers (set on this thread, read by the metrics thread)
        self._assigned = False
        self._retrying: str | None = None  # why writes are being retried
        metrics.HEALTH.ready_check = self._ready

    def _ready(self) -> tuple[bool, str]:
        """Ready once the consumer has partitions and while the database takes writes."""
        if self._retrying:
            return False, self._retrying
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
        messages = [m for batch in polled.values() for m in batch]
        written: collections.Counter[str] = collections.Counter()
        if messages:
            written = self._write(messages, stop)
        if polled:
            try:
                self.consumer.commit()  # only after the batch is durable
            except CommitFailedError as exc:  # the group moved on while we waited: the
                # records come again and are ignored by id, so nothing is lost or doubled
                log.warning("ledger offsets not committed: %s", exc)
        for name, n in written.items():
            ROWS.labels(name).inc(n)
        self._maybe_sweep()
        self._maybe_update_lag()
        return written.total()

    def _maybe_update_lag(self) -> None:
        """frontline_ledger_lag: after a step everything polled is written, so the position is
        what the ledger holds; the high watermark comes from the last fetch."""
        now = time.monotonic()
        if now - self._last_lag < self.config.lag_every_s:
            return
        self._last_lag = now
        for name, behind in ledger_lag(self.consumer, self.names).items():
            LAG.labels(name).set(behind)

    def _write(self, messages: list[Delivered],
               stop: Callable[[], bool]) -> collections.Counter[str]:
        delay = self.config.backoff_start_s
        while True:
            try:
                written = self.writer.write(messages)
                self._retrying = None
                BACKLOG_WAIT.set(0)
                return written
            except RetryLater as exc:
                WRITE_FAILURES.inc()
                self._retrying = ("database unreachable, retrying" if exc.unreachable else
                                  f"ledger writes refused, retrying: {exc.reason}")
                BACKLOG_WAIT.set(1)
                log.warning("ledger write failed (%s); retrying %d records in %.1f s",
                            exc.reason, len(messages), delay)
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
        sweep(self.store, datetime.fromtimestamp(now, UTC))


def sweep(store: LedgerStore, now: datetime) -> int:
    """Mark overdue assignments; returns how many. The overdue mark is a view for supervisors:
    whatever goes wrong is logged and waits for the next round, it never stops the writer."""
    try:
        marked = store.sweep_overdue(now)
    except Exception as exc:  # noqa: BLE001 - see above
        if not is_outage(exc):  # an outage: the next write retries and says so
            log.warning("overdue sweep failed (%s); trying again next round", one_line(exc))
        return 0
    if marked:
        log.info("marked %d lesson assignments overdue", marked)
    return marked


def ledger_lag(consumer: Any, names: dict[str, str]) -> dict[str, int]:
    """Records behind, by source (contract name), over the consumer's assigned partitions whose
    high watermark a fetch has told."""
    lag = dict.fromkeys(names.values(), 0)
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag[names[tp.topic]] += max(0, highwater - consumer.position(tp))
    return lag
