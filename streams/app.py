"""The Faust app: topics, the employee-state table and the pipeline agent, wired from settings."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import faust

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState, StateFormatError
from agents.pipeline_agent import OffsetGate, Send, make_pipeline
from agents.record_processor import RecordProcessor, Result, Source
from models.events import BonusAward, LessonAssignment, PerformanceGap
from models.playbook import Playbook
from streams import kafka_compat, metrics, topics
from streams.settings import Settings
from streams.topic_admin import BrokerView, BrokerWatch, describe_topics

log = logging.getLogger("frontline")

PUBLISH_FAILED_EXIT = 70  # EX_SOFTWARE: a batch was not published; it is processed again
BROKER_PROBE_EVERY_S = 1.0
BROKER_PROBE_TIMEOUT_S = 3.0


def stop_now(code: int, message: str) -> NoReturn:
    """Log `message` as critical and end the process with `code` at once: no graceful stop, so
    nothing more is acked or committed; the orchestrator restarts the worker."""
    log.critical("%s", message)
    logging.shutdown()
    os._exit(code)


def observe(source: Source, result: Result, seconds: float) -> None:
    """Count what one input record led to (no per-employee labels)."""
    metrics.EVENTS.labels(source, result.outcome).inc()
    metrics.PROCESSING_SECONDS.labels(source).observe(seconds)
    for out in result.outgoing:
        metrics.RECORDS_OUT.labels(out.topic).inc()
    if result.error_type is not None:
        metrics.DEAD_LETTERS.labels(source, result.error_type).inc()
    if source == "lesson-completions" and result.outcome == "processed":
        metrics.LESSONS_COMPLETED.inc()
    for record in result.records:
        if isinstance(record, PerformanceGap):
            metrics.GAPS.labels(record.status, record.standard).inc()
        elif isinstance(record, LessonAssignment):
            if record.status == "assigned":
                metrics.LESSONS_ASSIGNED.labels(record.standard).inc()
            else:
                metrics.LESSONS_ENDED.labels(record.status).inc()
        elif isinstance(record, BonusAward):
            metrics.AWARDS.labels(record.rule).inc()
            metrics.POINTS.labels(record.rule).inc(record.points)


@dataclass
class Frontline:
    app: faust.App
    settings: Settings
    playbook: Playbook
    agents: dict[str, Any]  # contract input topic name -> Faust agent
    table: Any  # the employee-state table
    # run in the worker's event loop from its start (a real worker only; see watch_broker)
    broker_watch: Callable[[], Awaitable[None]] | None = None


def create_app(settings: Settings, playbook: Playbook,
               partition_counts: dict[str, int] | None = None,
               send: Send | None = None) -> Frontline:
    """Build the Faust app. `partition_counts` gives the real partition count of each input
    topic (default: settings.partitions); `send` replaces the producer (agent tests)."""
    kafka_compat.apply(settings)
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        consumer_group_instance_id=settings.group_instance_id,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # room for the largest record the pipeline produces (it checks max_record_bytes)
        producer_max_request_size=max(1_000_000, settings.max_record_bytes + 10_000),
        table_standby_replicas=0,
        web_enabled=False,
        processing_guarantee="at_least_once",
    )
    names = {name: settings.topic(name) for name in topics.ALL}
    agents: dict[str, Any] = {}
    # The table's changelog holds EmployeeState.to_bytes(); the pipeline writes it directly,
    # once per employee per batch (see agents/pipeline_agent.py), not through table[key] = v.
    # (bytes key and value types make Faust's changelog serializers "raw")
    table = app.Table("employee-state", default=None, key_type=bytes, value_type=bytes,
                      partitions=settings.partitions)
    states = StateTable(table)
    counts = partition_counts or {}
    processor = RecordProcessor(
        DecisionEngine(playbook, settings.dedupe_horizon_hours * 3600.0),
        states,
        lambda topic: counts.get(topic, settings.partitions),
        max_record_bytes=settings.max_record_bytes,
        max_event_ahead_s=settings.max_event_ahead_hours * 3600.0,
    )

    changelog = table.changelog_topic.get_topic_name()
    publishing = Publishing({**{names[t]: t for t in topics.OUTPUTS}, changelog: "changelog"})

    async def producer_send(topic: str, key: bytes | None, value: bytes | None,
                            partition: int | None, headers: Any) -> Any:
        entry = publishing.sending(topic)
        try:
            future = await app.producer.send(topic, key, value, partition, None, headers)
        except BaseException:
            publishing.refused(entry)
            raise
        publishing.sent(entry, future)
        return future

    publish = send or producer_send

    async def save_state(employee_id: str, state: EmployeeState, partition: int) -> Any:
        return await publish(table.changelog_topic.get_topic_name(), employee_id.encode(),
                             state.to_bytes(), partition, None)

    async def fatal(exc: BaseException) -> None:
        message = (f"cannot publish a batch ({type(exc).__name__}: {exc}); stopping without "
                   f"committing it, it will be processed again on restart")
        if send is None:  # a real worker: exit now, before Faust acks and commits the batch
            stop_now(PUBLISH_FAILED_EXIT, message)
        log.critical("%s", message)

    progress = Progress({names[source]: source for source in topics.INPUTS})
    gate = OffsetGate() if send is None else None  # a real consumer: see OffsetGate

    async def rewind(tp: Any, offset: int) -> None:
        log.warning("%s[%d]: records from offset %d were skipped by the consumer; reading them "
                    "again", tp.topic, tp.partition, offset)
        metrics.REWINDS.labels(progress.sources.get(tp.topic, tp.topic)).inc()
        try:  # in the consumer's own thread, as Faust's recovery seeks
            await app.consumer.seek_wait({tp: offset})
        except Exception as exc:  # noqa: BLE001 - e.g. the partition was just revoked: whoever
            # holds it next starts from the committed offset, which never passes a skipped record
            log.warning("cannot rewind %s[%d]: %s", tp.topic, tp.partition, exc)

    for source in topics.INPUTS:
        metrics.REWINDS.labels(source)  # a series at 0 from the start
        channel = app.topic(names[source], key_serializer="raw", value_serializer="raw")
        body = make_pipeline(processor, source, names, publish, save_state, observe, fatal,
                             acked=progress.acked, gate=gate, rewind=rewind)
        agents[source] = app.agent(channel, name=f"frontline.{source}")(body)
    metrics.PLAYBOOK_INFO.labels(playbook.version).set(1)
    watch = None
    if gate is not None:
        guard_offsets(app.consumer, set(progress.sources))
        watch_health(app, progress, gate, rewind)
        watch = watch_broker(settings, [*names.values(), changelog], publishing)
    return Frontline(app, settings, playbook, agents, table, watch)


class Publishing:
    """Records handed to the producer, in order, until the broker has acknowledged them:
    collect() counts those acknowledged in frontline_records_published_total and says how long
    the oldest still waiting has waited. Collected about once a second by the broker watch
    rather than with a done-callback per record (measured: 10 µs a record against 2.5)."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        # real topic name -> its counter (at 0 from the start, so that rate() sees the first)
        self._counters = {topic: metrics.PUBLISHED.labels(label)
                          for topic, label in labels.items()}
        # [handed over at, its future (None while the producer takes it, False if refused),
        #  real topic name], oldest first
        self._pending: collections.deque[list[Any]] = collections.deque()

    def sending(self, topic: str) -> list[Any]:
        """A record is about to be handed to the producer: its entry for sent()/refused()."""
        entry = [time.monotonic(), None, topic]
        self._pending.append(entry)
        return entry

    @staticmethod
    def sent(entry: list[Any], future: Any) -> None:
        entry[1] = future

    @staticmethod
    def refused(entry: list[Any]) -> None:
        entry[1] = False

    def collect(self, now: float) -> float:
        """Count what the broker acknowledged since the last call, in order; return how long
        the oldest record not acknowledged yet has waited (0 when none waits)."""
        pending = self._pending
        acked: collections.Counter[str] = collections.Counter()
        while pending:
            _, future, topic = pending[0]
            if future is None or (future is not False and not future.done()):
                break
            pending.popleft()
            if future is not False and not future.cancelled() and future.exception() is None:
                acked[topic] += 1
        for topic, n in acked.items():
            counter = self._counters.get(topic)
            if counter is not None:
                counter.inc(n)
        return now - pending[0][0] if pending else 0.0


def watch_broker(settings: Settings, topic_names: Iterable[str], publishing: Publishing,
                 health: metrics.Health = metrics.HEALTH,
                 stop: Callable[[int, str], None] = stop_now,
                 every_s: float = BROKER_PROBE_EVERY_S,
                 timeout_s: float = BROKER_PROBE_TIMEOUT_S) -> Callable[[], Awaitable[None]]:
    """The worker's watch on its broker, to run in its event loop from its start: every
    `every_s` a metadata request on a connection of its own says whether the broker answers
    and still has the worker's topics (BrokerWatch judges); then the records acknowledged
    since are counted, and how long the oldest one not acknowledged has waited is checked.

    Unreachable: /readyz 503 "broker unreachable" and frontline_broker_up 0 at once, exit 69
    after FRONTLINE_BROKER_LOST_EXIT_S. Topics gone or changed: exit 75 at once. A record not
    acknowledged within FRONTLINE_PUBLISH_TIMEOUT_S: exit 70 (its batch is not committed and
    is processed again after the restart)."""
    judge = BrokerWatch(topic_names, settings.broker_lost_exit_s,
                        f"the broker at {settings.broker}")

    async def probe(client: Any) -> BrokerView | None:
        try:
            if not client.cluster.brokers():
                await asyncio.wait_for(client.bootstrap(), timeout_s)
            return await describe_topics(client, judge.topics, timeout_s)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the broker did not answer
            log.debug("broker probe failed: %s: %s", type(exc).__name__, exc)
            return None

    up: bool | None = None  # as last seen

    async def tick(client: Any) -> None:
        nonlocal up
        view = await probe(client)
        now = time.monotonic()
        verdict = judge.observe(view, now)
        if verdict.reachable != up:
            metrics.BROKER_UP.set(1 if verdict.reachable else 0)
            health.hold("broker", None if verdict.reachable else "broker unreachable")
            if not verdict.reachable:
                log.error("the broker at %s does not answer; /readyz says so, and the worker "
                          "exits if it is still unreachable in %g s", settings.broker,
                          settings.broker_lost_exit_s)
            elif up is not None:
                log.warning("the broker at %s answers again", settings.broker)
            up = verdict.reachable
        if verdict.exit_code is not None:
            stop(verdict.exit_code, verdict.message)
        waited = publishing.collect(now)
        if waited > settings.publish_timeout_s:
            stop(PUBLISH_FAILED_EXIT,
                 f"the broker has not acknowledged a record for {waited:.0f} s "
                 f"(FRONTLINE_PUBLISH_TIMEOUT_S={settings.publish_timeout_s:g}); stopping "
                 f"without committing its batch, it will be processed again on restart")

    async def run() -> None:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers,
                                client_id=f"{settings.app_id}-broker-watch",
                                request_timeout_ms=int(timeout_s * 1000))
        try:
            while True:
                try:
                    await tick(client)
                except Exception:  # a bug here must not end the watch (nor the counting)
                    log.exception("the broker watch failed; it goes on")
                await asyncio.sleep(every_s)
        finally:
            await client.close()

    return run


class Progress:
    """The input side's metrics: end-to-end latency, lag and partitions assigned."""

    def __init__(self, sources: dict[str, Source]) -> None:
        self.sources = sources  # real topic name -> contract name

    def acked(self, source: Source, events: list[Any]) -> None:
        """A batch is on the broker: observe each record's end-to-end time."""
        now = time.time()
        histogram = metrics.END_TO_END_SECONDS.labels(source)
        for event in events:
            timestamp = event.message.timestamp
            if timestamp:
                histogram.observe(max(0.0, now - timestamp))

    def update_lag(self, consumer: Any, next_offset: Mapping[Any, int]) -> None:
        """frontline_consumer_lag and frontline_partitions_assigned from the consumer's
        assignment, the high watermarks of its fetches and the next offset the pipeline will
        process on each partition (the OffsetGate's; else the committed offset)."""
        lag = dict.fromkeys(self.sources.values(), 0)
        assigned = dict.fromkeys(self.sources.values(), 0)
        for tp in consumer.assignment():
            source = self.sources.get(tp.topic)
            if source is None:
                continue
            assigned[source] += 1
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = next_offset.get(tp)
            if position is None:
                position = consumer._committed_offset.get(tp) or 0
            lag[source] += max(0, highwater - position)
        for source in self.sources.values():
            metrics.CONSUMER_LAG.labels(source).set(lag[source])
            metrics.PARTITIONS_ASSIGNED.labels(source).set(assigned[source])


def watch_health(app: faust.App, progress: Progress, gate: OffsetGate,
                 rewind: Callable[[Any, int], Awaitable[None]]) -> None:
    """Keep /healthz, /readyz and the lag gauges current from inside the worker's event loop,
    and ask again for skipped records that a rewind has not brought yet."""
    health = metrics.HEALTH

    @app.timer(1.0, on_leader=False)
    async def heartbeat() -> None:
        health.beat()
        for tp, offset in gate.overdue(time.monotonic()):
            await rewind(tp, offset)

    @app.timer(5.0, on_leader=False)
    async def lag() -> None:
        progress.update_lag(app.consumer, gate.next)

    @app.on_partitions_revoked.connect
    def revoked(sender: Any, revoked: Any, **_: Any) -> None:
        gate.forget(revoked)
        health.set_ready(False, "rebalancing")

    @app.on_rebalance_complete.connect
    async def rebalanced(sender: Any, **_: Any) -> None:
        health.set_ready(True, "ok")


def guard_offsets(consumer: Any, input_topics: set[str]) -> None:
    """Two changes to Faust's consumer so that a takeover never loses input records.

    1. "Seek to committed" also rewinds input partitions that have no committed offset. After
       a rebalance Faust seeks its partitions to their committed offsets, but aiokafka skips
       partitions without one, and the fetcher may already have read (and Faust dropped, the
       partition being paused for recovery) their first records: a worker taking over from
       one that died before its first commit would start those partitions in the middle.
    2. No "gaps" on input partitions. Faust treats a jump in offsets as a gap (as in a
       compacted topic) and commits past it; on our inputs a jump means records it skipped,
       which the OffsetGate reads again, so the commit must wait for them."""
    add_gap = consumer._add_gap

    async def add_gap_except_inputs(tp: Any, offset_from: int, offset_to: int) -> None:
        if tp.topic not in input_topics:
            await add_gap(tp, offset_from, offset_to)

    consumer._add_gap = add_gap_except_inputs
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Any:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if tp.topic in input_topics and not offset]
        if fresh:
            log.info("no committed offset yet for %s: reading them from the beginning",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(fresh)))
            await consumer._thread.seek_to_beginning(*fresh)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning


class StateTable:
    """Employee states in the Faust table's store, keyed by employee id. Values recovered from
    the changelog are bytes and are decoded on first use; the live objects stay in memory."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: str) -> EmployeeState | None:
        store = self._table.data
        kb = key.encode()
        value = store.data.get(kb)
        if isinstance(value, bytes):  # recovered from the changelog
            try:
                value = EmployeeState.from_bytes(value)
            except StateFormatError as exc:
                # Not a format any release wrote (a damaged or foreign record on the
                # changelog): the employee starts afresh rather than every later record of
                # theirs failing; the bytes stay on the changelog for inspection.
                log.error("employee %r: cannot read the saved state (%s); starting it afresh",
                          key, exc)
                value = EmployeeState(key)
            store.data[kb] = value
        return value

    def put(self, key: str, state: EmployeeState, partition: int) -> None:
        """Keep `state` in memory (the changelog write is the caller's)."""
        store = self._table.data
        kb = key.encode()
        store.data[kb] = state
        # lets Faust drop it when the partition moves to another worker
        store._key_partition[kb] = partition
