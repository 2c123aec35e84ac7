"""Reconcile: compare the decision ids on the output topics with the ledger's, both ways."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from models.ledger import Assignment, Award, Gap
from streams import topics
from streams.ledger_store import LedgerStore
from streams.settings import Settings

# contract topic -> how a record's ledger id is read from it
_ID_OF = {
    topics.BONUS_AWARDS: lambda r: r["award_id"],
    topics.LESSON_ASSIGNMENTS: lambda r: r["assignment_id"],
    topics.PERFORMANCE_GAPS: lambda r: f"{r['gap_id']}:{r['status']}",
}


@dataclass
class Report:
    on_topics: dict[str, int] = field(default_factory=dict)
    in_ledger: dict[str, int] = field(default_factory=dict)
    missing_in_ledger: dict[str, list[str]] = field(default_factory=dict)
    missing_on_topics: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not any(self.missing_in_ledger.values()) and \
            not any(self.missing_on_topics.values())


def topic_ids(settings: Settings, idle_s: float = 2.0, timeout_s: float = 300.0
              ) -> dict[str, set[str]]:
    """Every id on the decision topics, read from offset 0 until nothing new comes for
    `idle_s` (end offsets are not asked for: some brokers answer them wrongly)."""
    names = {settings.topic(t): t for t in _ID_OF}
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        assigned = [TopicPartition(name, p) for name in names
                    for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(assigned)
        for tp in assigned:
            consumer.seek(tp, 0)
        ids: dict[str, set[str]] = {t: set() for t in _ID_OF}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=10_000)
            for tp, messages in polled.items():
                topic = names[tp.topic]
                for m in messages:
                    ids[topic].add(_ID_OF[topic](json.loads(m.value)))
            if polled:
                quiet_since = time.monotonic()
        return ids
    finally:
        consumer.close()


def ledger_ids(store: LedgerStore) -> dict[str, set[str]]:
    with store.engine.connect() as conn:
        gaps = {f"{g}:{s}" for g, s in conn.execute(select(Gap.gap_id, Gap.status))}
    return {topics.BONUS_AWARDS: store.ids(Award),
            topics.LESSON_ASSIGNMENTS: store.ids(Assignment),
            topics.PERFORMANCE_GAPS: gaps}


def reconcile(on_topics: dict[str, set[str]], in_ledger: dict[str, set[str]]) -> Report:
    report = Report()
    for topic in _ID_OF:
        seen, stored = on_topics.get(topic, set()), in_ledger.get(topic, set())
        report.on_topics[topic], report.in_ledger[topic] = len(seen), len(stored)
        report.missing_in_ledger[topic] = sorted(seen - stored)
        report.missing_on_topics[topic] = sorted(stored - seen)
    return report
