"""Reading what the pipeline published: a background consumer that tallies the output topics
(counts, distinct ids, points, dead letters by error type). Used by the demo and the tests."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer

from models.dead_letters import H_ERROR_TYPE
from streams import topics
from streams.settings import Settings


@dataclass
class Tally:
    records: Counter[str] = field(default_factory=Counter)  # contract topic -> records seen
    ids: dict[str, Counter[str]] = field(default_factory=dict)  # topic -> id -> times seen
    gaps: Counter[str] = field(default_factory=Counter)  # opened / deferred / closed
    assignments: Counter[str] = field(default_factory=Counter)  # by status
    points: int = 0
    awards_by_rule: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)  # error type -> count
    dead_letter_values: list[tuple[bytes, dict[str, bytes]]] = field(default_factory=list)
    values: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def distinct(self, topic: str) -> int:
        return len(self.ids.get(topic, {}))

    def repeated(self, topic: str) -> list[str]:
        """Ids seen more than once on a topic."""
        return [k for k, n in self.ids.get(topic, Counter()).items() if n > 1]


class OutputTally:
    """Consumes every output topic from the beginning until stopped."""

    def __init__(self, settings: Settings, keep_values: bool | tuple[str, ...] = False) -> None:
        """`keep_values`: keep every record read (True), or those of these contract topics."""
        self.settings = settings
        self.keep_values = keep_values
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._names = {settings.topic(t): t for t in topics.OUTPUTS}
        self._thread = threading.Thread(target=self._run, name="output-tally", daemon=True)

    def start(self) -> OutputTally:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def snapshot(self) -> Tally:
        with self._lock:
            return Tally(Counter(self.tally.records),
                         {k: Counter(v) for k, v in self.tally.ids.items()},
                         Counter(self.tally.gaps), Counter(self.tally.assignments),
                         self.tally.points,
                         Counter(self.tally.awards_by_rule), Counter(self.tally.dead_letters),
                         list(self.tally.dead_letter_values),
                         {k: list(v) for k, v in self.tally.values.items()})

    def _run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 group_id=None, fetch_max_wait_ms=100,
                                 client_id="frontline-tally")
        consumer.subscribe(list(self._names))
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=200, max_records=5000)
                with self._lock:
                    for tp, messages in batches.items():
                        for m in messages:
                            self._add(self._names[tp.topic], m.value, m.headers)
        finally:
            consumer.close()

    def _keeps(self, topic: str) -> bool:
        keep = self.keep_values
        return keep if isinstance(keep, bool) else topic in keep

    def _add(self, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        t = self.tally
        t.records[topic] += 1
        if topic == topics.DEAD_LETTERS:
            hdrs = dict(headers)
            t.dead_letters[hdrs.get(H_ERROR_TYPE, b"?").decode()] += 1
            if self._keeps(topic):
                t.dead_letter_values.append((value, hdrs))
            return
        record = json.loads(value)
        if self._keeps(topic):
            t.values.setdefault(topic, []).append(record)
        if topic == topics.PERFORMANCE_GAPS:
            t.gaps[record["status"]] += 1
        elif topic == topics.LESSON_ASSIGNMENTS:
            t.assignments[record.get("status", "assigned")] += 1
        t.ids.setdefault(topic, Counter())[topics.record_key(topic, record)] += 1
        if topic == topics.BONUS_AWARDS:
            t.points += record["points"]
            t.awards_by_rule[record["rule"]] += 1
