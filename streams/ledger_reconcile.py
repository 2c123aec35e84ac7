"""Reconcile: compare the decision ids on the output topics with the ledger's, both ways. A
record the ledger writer quarantined is accounted for (listed as quarantined, not missing).

A record whose JSON has no id stands for its position, `@<partition>:<offset>`, on both
sides."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from models.events import ENDED_STATUSES
from models.ledger import Assignment, Award, Effect, Gap, PendingEnding, Quarantined
from streams import topics
from streams.ledger_store import LedgerStore, source_record_id, storable_text
from streams.settings import Settings

# the decision topics the ledger keeps, by contract name
DECISION_TOPICS = (topics.BONUS_AWARDS, topics.LESSON_ASSIGNMENTS, topics.PERFORMANCE_GAPS,
                   topics.LESSON_EFFECTS)


@dataclass
class Report:
    on_topics: dict[str, int] = field(default_factory=dict)
    in_ledger: dict[str, int] = field(default_factory=dict)
    missing_in_ledger: dict[str, list[str]] = field(default_factory=dict)
    missing_on_topics: dict[str, list[str]] = field(default_factory=dict)
    # on the topics, not in the ledger, but in its quarantine: accounted for
    quarantined: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not any(self.missing_in_ledger.values()) and \
            not any(self.missing_on_topics.values())


def topic_ids(settings: Settings, idle_s: float = 2.0, timeout_s: float = 300.0
              ) -> dict[str, set[str]]:
    """Every id on the decision topics, read from offset 0 until nothing new comes for
    `idle_s` (end offsets are not asked for: some brokers answer them wrongly)."""
    names = {settings.topic(t): t for t in DECISION_TOPICS}
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        assigned = [TopicPartition(name, p) for name in names
                    for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(assigned)
        for tp in assigned:
            consumer.seek(tp, 0)
        ids: dict[str, set[str]] = {t: set() for t in DECISION_TOPICS}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=10_000)
            for tp, messages in polled.items():
                topic = names[tp.topic]
                for m in messages:
                    ids[topic].add(source_record_id(topic, m.value)
                                   or position_id(m.partition, m.offset))
            if polled:
                quiet_since = time.monotonic()
        return ids
    finally:
        consumer.close()


def ledger_ids(store: LedgerStore) -> dict[str, set[str]]:
    """The same ids from the ledger's rows: an assignment stands for its `assigned` record and,
    once ended, its ending record (an ending still waiting for its assignment counts too)."""
    with store.engine.connect() as conn:
        gaps = {f"{g}:{s}" for g, s in conn.execute(select(Gap.gap_id, Gap.status))}
        assignments: set[str] = set()
        for a, s in conn.execute(select(Assignment.assignment_id, Assignment.status)):
            assignments.add(a)
            if s in ENDED_STATUSES:
                assignments.add(f"{a}:{s}")
        assignments |= {f"{a}:{s}" for a, s in conn.execute(
            select(PendingEnding.assignment_id, PendingEnding.status))}
    return {topics.BONUS_AWARDS: store.ids(Award),
            topics.LESSON_ASSIGNMENTS: assignments,
            topics.PERFORMANCE_GAPS: gaps,
            topics.LESSON_EFFECTS: store.ids(Effect)}


def position_id(partition: int, offset: int) -> str:
    """What stands for a record without an id: where it is on its topic."""
    return f"@{partition}:{offset}"


def quarantined_ids(store: LedgerStore) -> dict[str, set[str]]:
    """The ids of the records in the quarantine, by contract topic (every topic the writer
    reads, lesson completions too)."""
    q = Quarantined
    ids: dict[str, set[str]] = {}
    with store.engine.connect() as conn:
        for topic, record_id, partition, offset in conn.execute(
                select(q.contract_topic, q.record_id, q.kafka_partition, q.kafka_offset)):
            ids.setdefault(topic, set()).add(record_id or position_id(partition, offset))
    return ids


def reconcile(on_topics: dict[str, set[str]], in_ledger: dict[str, set[str]],
              quarantined: dict[str, set[str]] | None = None) -> Report:
    report = Report()
    for topic in DECISION_TOPICS:
        seen, stored = on_topics.get(topic, set()), in_ledger.get(topic, set())
        kept = (quarantined or {}).get(topic, set())
        report.on_topics[topic], report.in_ledger[topic] = len(seen), len(stored)
        absent = seen - stored
        held = {i for i in absent if storable_text(i) in kept}
        report.quarantined[topic] = sorted(held)
        report.missing_in_ledger[topic] = sorted(absent - held)
        report.missing_on_topics[topic] = sorted(stored - seen)
    return report
