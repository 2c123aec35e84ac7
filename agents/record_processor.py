"""From one raw input record to the raw records to publish: decode and validate, route, dedupe,
decide, encode. No Kafka client inside, so it is tested without a broker.

Records must sit in the partition their employee's state lives in (Kafka's default murmur2
partitioning of the employee id, as any Java/kafka-python/aiokafka producer keyed by employee id
does). A record found elsewhere is forwarded once, byte for byte, to the right partition.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import ValidationError

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from models import dead_letters
from models.events import (
    BonusAward,
    Interaction,
    LessonAssignment,
    LessonCompletion,
    LessonEffect,
    OutputRecord,
    PerformanceGap,
)

log = logging.getLogger(__name__)

INTERACTIONS, LESSON_COMPLETIONS = "interactions", "lesson-completions"
Source = Literal["interactions", "lesson-completions"]
Outcome = Literal["processed", "duplicate", "dead_lettered", "forwarded"]

H_FORWARDED_FROM = "frontline.forwarded-from"


class StateStore(Protocol):
    """Where employee states live between records (a Faust table in the worker)."""

    def get(self, key: str) -> EmployeeState | None: ...

    def put(self, key: str, state: EmployeeState, partition: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish; `topic` is the contract name, `partition` None = by key."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


@dataclass(slots=True)
class Result:
    outcome: Outcome
    outgoing: list[Outgoing] = field(default_factory=list)
    records: list[OutputRecord] = field(default_factory=list)
    employee_id: str | None = None
    state: EmployeeState | None = None  # the state to persist when it changed
    error_type: str | None = None


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as in the Java client's default partitioner), signed 32-bit."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length - extra
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_OUTPUT_TOPIC: dict[type, str] = {
    PerformanceGap: "performance-gaps",
    LessonAssignment: "lesson-assignments",
    BonusAward: "bonus-awards",
    LessonEffect: "lesson-effects",
}


class RecordProcessor:
    """Turns raw input records into raw output records, keeping per-employee state in `states`."""

    def __init__(self, engine: DecisionEngine, states: StateStore,
                 partitions: Callable[[str], int]) -> None:
        self.engine = engine
        self.states = states
        self._partitions = partitions  # input topic name -> its partition count

    def process(self, source: Source, topic: str, partition: int, offset: int,
                key: bytes | None, value: bytes) -> Result:
        """Never raises: a record that cannot be processed comes back as a dead letter."""
        try:
            return self._process(source, topic, partition, offset, key, value)
        except Exception as exc:  # a bug must cost one record, not stall the partition
            log.exception("cannot process %s/%s/%s", topic, partition, offset)
            refusal = dead_letters.Refusal(dead_letters.INTERNAL_ERROR,
                                           f"{type(exc).__name__}: {exc}")
            return self._dead_letter(refusal, topic, partition, offset, key, value)

    def _process(self, source: Source, topic: str, partition: int, offset: int,
                 key: bytes | None, value: bytes) -> Result:
        model = Interaction if source == INTERACTIONS else LessonCompletion
        try:
            event = model.model_validate_json(value)
        except ValidationError as exc:
            return self._dead_letter(dead_letters.explain_validation(exc), topic, partition,
                                     offset, key, value)
        employee = event.employee_id
        ekey = employee.encode()
        home = partition_for(ekey, self._partitions(topic))
        if home != partition:
            return Result("forwarded", [Outgoing(
                source, ekey, value, [(H_FORWARDED_FROM, f"{topic}/{partition}/{offset}".encode())],
                partition=home)], employee_id=employee)
        state = self.states.get(employee)
        if state is None:
            state = EmployeeState(employee)
            self.states.put(employee, state, partition)
        if isinstance(event, Interaction):
            decision = self.engine.on_interaction(state, event)
        else:
            decision = self.engine.on_completion(state, event)
        if decision.outcome == "duplicate":
            return Result("duplicate", employee_id=employee)
        if decision.outcome == "rejected":
            return self._dead_letter(dead_letters.Refusal(decision.code, decision.reason), topic,
                                     partition, offset, key, value)
        out = []
        for record in decision.records:
            name = _OUTPUT_TOPIC.get(type(record), "execution-scores")
            out.append(Outgoing(name, ekey, record.model_dump_json().encode()))
        return Result("processed", out, decision.records, employee, state)

    @staticmethod
    def _dead_letter(refusal: dead_letters.Refusal, topic: str, partition: int, offset: int,
                     key: bytes | None, value: bytes) -> Result:
        return Result("dead_lettered", [Outgoing(
            "dead-letters", key or b"", value,
            dead_letters.headers(refusal, topic, partition, offset))],
            error_type=refusal.error_type)
