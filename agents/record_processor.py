"""From one raw input record to the raw records to publish: decode and validate, route, dedupe,
decide, encode. No Kafka client inside, so it is tested without a broker.

Records must sit in the partition their employee's state lives in (Kafka's default murmur2
partitioning of the employee id, as any Java/kafka-python/aiokafka producer keyed by employee id
does). A record found elsewhere is forwarded once, byte for byte, to the right partition, with
headers that say where it was and what its key was.

No single input record can stop the worker, stall it or corrupt its state:

- `process` never raises: a record that cannot be processed comes back as a dead letter that is
  the original record (models/dead_letters.py).
- Every record it asks to publish (outputs, forwarded copies, dead letters, and the employee's
  state for the changelog) fits in `max_record_bytes`, counted as the producer encodes it. A
  record whose outputs, copy or state would not fit is dead-lettered instead (`output_too_large`);
  a dead letter that would not fit is cut to fit (its headers say so).
- A decision is all or nothing: whatever goes wrong in it (an exception, an output too large),
  the employee's state is put back exactly as it was before the record (see RollbackPoint).
- A state is stored for a new employee only once one of its records was processed: refused
  records leave nothing behind.
- An event time more than `max_event_ahead_s` ahead of its record's broker timestamp is
  dead-lettered (`implausible_time`): an event time far in the future would otherwise make
  every later real event of that employee look too late to be told apart from a replay. The
  broker timestamp is the record's own, so a replay decides the same; older event times
  (backfills) are fine. Without a broker timestamp only the fixed range of models/events.py
  applies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import ValidationError

from agents.decision_engine import Decision, DecisionEngine
from agents.employee_state import EmployeeState
from models import dead_letters
from models.dead_letters import Refusal
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
DEAD_LETTERS = "dead-letters"
Source = Literal["interactions", "lesson-completions"]
Outcome = Literal["processed", "duplicate", "dead_lettered", "forwarded"]
Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None

# Headers of a forwarded copy: where the original was ("topic/partition/offset"), and its key
# (FORWARDED_KEY holds it; FORWARDED_KEY_NULL says it was null).
H_FORWARDED_FROM = "frontline.forwarded-from"
H_FORWARDED_KEY = "frontline.forwarded-key"
H_FORWARDED_KEY_NULL = "frontline.forwarded-key-null"

# Must not exceed the producer's max_request_size (Faust's producer_max_request_size, 1,000,000
# by default) nor the max.message.bytes of the topics written to; the margin covers the produce
# request's own framing.
MAX_RECORD_BYTES = 990_000
MAX_EVENT_AHEAD_S = 24 * 3600.0

# Upper bounds of a record's framing in a v2 record batch of its own (aiokafka's estimate counts
# the same: batch header 61, a record's fixed fields 21, varint lengths of at most 5 bytes).
_BATCH_OVERHEAD = 61 + 21
_VARINT = 5


class StateStore(Protocol):
    """Where employee states live between records (a Faust table in the worker)."""

    def get(self, key: str) -> EmployeeState | None: ...

    def put(self, key: str, state: EmployeeState, partition: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish; `topic` is the contract name, `partition` None = by key. A dead
    letter keeps a null key or value as None."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None

    @property
    def size(self) -> int:
        return record_size(self.key, self.value, self.headers)


@dataclass(slots=True)
class Result:
    outcome: Outcome
    outgoing: list[Outgoing] = field(default_factory=list)
    records: list[OutputRecord] = field(default_factory=list)
    employee_id: str | None = None
    # The state to persist: the changed state of a processed record, or the state put back
    # after a failed decision (which replaces the object the store held until then).
    state: EmployeeState | None = None
    error_type: str | None = None


def record_size(key: bytes | None, value: bytes | None,
                headers: Iterable[tuple[str, bytes | None]] | None = None) -> int:
    """An upper bound of the bytes a record takes in a record batch of its own: what the
    producer checks against its max_request_size and the broker against max.message.bytes."""
    size = _BATCH_OVERHEAD + 3 * _VARINT + len(key or b"") + len(value or b"")
    for name, data in headers or ():
        size += 2 * _VARINT + len(name.encode()) + len(data or b"")
    return size


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


def header(headers: Headers, name: str) -> bytes | None:
    """The value of header `name` (the last one, if repeated), from headers as Faust gives them:
    a list of (name, value) pairs, a mapping, or None. Never raises: a malformed header is
    taken as absent."""
    found: bytes | None = None
    try:
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        for pair in pairs:
            k, v = pair
            if k == name or k == name.encode():
                found = v.encode() if isinstance(v, str) else v if isinstance(v, bytes) else None
    except (TypeError, ValueError, UnicodeError):
        return None
    return found


@dataclass(frozen=True, slots=True)
class _Record:
    """One raw input record, as read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a record was first produced: itself, or the original of a forwarded copy."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    copy_at: str | None = None  # "topic/partition/offset" of the forwarded copy

    @classmethod
    def of(cls, rec: _Record) -> _Origin:
        raw = header(rec.headers, H_FORWARDED_FROM)
        if raw is not None:
            try:
                topic, partition, offset = raw.decode().rsplit("/", 2)
                if topic:
                    key = header(rec.headers, H_FORWARDED_KEY)
                    if header(rec.headers, H_FORWARDED_KEY_NULL) is not None:
                        key = None
                    elif key is None:  # a copy forwarded by an earlier version
                        key = rec.key
                    return cls(topic, int(partition), int(offset), key,
                               f"{rec.topic}/{rec.partition}/{rec.offset}")
            except (ValueError, UnicodeError):
                pass  # not one of ours: the record is taken as an original
        return cls(rec.topic, rec.partition, rec.offset, rec.key)

    def forwarded_headers(self) -> list[tuple[str, bytes]]:
        out = [(H_FORWARDED_FROM, f"{self.topic}/{self.partition}/{self.offset}".encode())]
        if self.key is None:
            out.append((H_FORWARDED_KEY_NULL, b"true"))
        else:
            out.append((H_FORWARDED_KEY, self.key))
        return out


Event = Interaction | LessonCompletion


@dataclass(slots=True)
class RollbackPoint:
    """How to put an employee's state back as it was before any of its recent records: a
    snapshot (`state.to_bytes()`, None when the employee had no state) and the events processed
    since, to decide again on the snapshot. Decisions are deterministic, so that rebuilds the
    state exactly as it was before the record that failed, at the cost of one snapshot per
    employee per REDO_MAX records (a snapshot per record would cost as much as the decision).
    The events are kept as their raw values, and in `kinds` whether each is an interaction
    (b"i") or a completion (b"c"): neither bytes nor a bytearray is tracked by the garbage
    collector, so keeping them does not make its full collections more frequent (parsed events
    or a tuple per event cost a few % of the throughput that way)."""

    state: EmployeeState  # the live object it guards
    snapshot: bytes | None  # None: the employee had no state
    redo: list[bytes] = field(default_factory=list)
    kinds: bytearray = field(default_factory=bytearray)


REDO_MAX = 32  # events per rollback point before a new snapshot
_INTERACTION, _COMPLETION = ord("i"), ord("c")
POINTS_MAX = 1024  # employees with a rollback point ...
REDO_TOTAL_MAX = 4096  # ... and events kept in all: beyond, all start afresh (bounds memory)

_OUTPUT_TOPIC: dict[type, str] = {
    PerformanceGap: "performance-gaps",
    LessonAssignment: "lesson-assignments",
    BonusAward: "bonus-awards",
    LessonEffect: "lesson-effects",
}


def _iso(epoch_s: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_s, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s:.0f} s since 1970"


class RecordProcessor:
    """Turns raw input records into raw output records, keeping per-employee state in `states`.

    `max_record_bytes`: no record it asks to publish is larger (see record_size); it must not
    exceed the producer's max_request_size nor the topics' max.message.bytes.
    `max_event_ahead_s`: how far an event time may lie ahead of its record's broker timestamp.
    """

    def __init__(self, engine: DecisionEngine, states: StateStore,
                 partitions: Callable[[str], int], max_record_bytes: int = MAX_RECORD_BYTES,
                 max_event_ahead_s: float = MAX_EVENT_AHEAD_S) -> None:
        self.engine = engine
        self.states = states
        self._partitions = partitions  # input topic name -> its partition count
        self.max_record_bytes = max_record_bytes
        self.max_event_ahead_s = max_event_ahead_s
        self._points: dict[str, RollbackPoint] = {}
        self._redo_total = 0

    def process(self, source: Source, topic: str, partition: int, offset: int,
                key: bytes | None, value: bytes | None, *, timestamp: float | None = None,
                headers: Headers = None) -> Result:
        """Never raises: a record that cannot be processed comes back as a dead letter.
        `timestamp` is the record's broker timestamp in seconds (None or 0: unknown)."""
        rec = _Record(topic, partition, offset, key, value, headers)
        try:
            return self._process(source, rec, timestamp)
        except Exception as exc:  # a bug must cost one record, not stall the partition
            log.exception("cannot process %s/%s/%s", topic, partition, offset)
            return self._refuse(Refusal(dead_letters.INTERNAL_ERROR,
                                        f"{type(exc).__name__}: {exc}"), rec)

    def _process(self, source: Source, rec: _Record, timestamp: float | None) -> Result:
        if rec.value is None:
            return self._refuse(Refusal(dead_letters.NOT_JSON, "value is null (a tombstone), "
                                        "not a JSON object"), rec)
        model = Interaction if source == INTERACTIONS else LessonCompletion
        try:
            event = model.model_validate_json(rec.value)
        except ValidationError as exc:
            return self._refuse(dead_letters.explain_validation(exc), rec)
        if timestamp is not None and timestamp > 0:
            refusal = self._implausible_time(event, timestamp)
            if refusal is not None:
                return self._refuse(refusal, rec)
        employee = event.employee_id
        ekey = employee.encode()
        home = partition_for(ekey, self._partitions(rec.topic))
        if home != rec.partition:
            return self._forward(source, rec, employee, ekey, home)
        return self._decide(event, rec, employee, ekey)

    def _implausible_time(self, event: Event, timestamp: float) -> Refusal | None:
        # an interaction's started_at is not after its ended_at, and both are within the
        # plausible range of models/events.py (so .timestamp() cannot overflow)
        name, at = (("ended_at", event.ended_at) if isinstance(event, Interaction)
                    else ("completed_at", event.completed_at))
        ahead = at.timestamp() - timestamp
        if ahead <= self.max_event_ahead_s:
            return None
        return Refusal(dead_letters.IMPLAUSIBLE_TIME,
                       f"{name} {at.isoformat()} is {ahead / 3600:.1f} h after the record's "
                       f"broker timestamp {_iso(timestamp)}; at most "
                       f"{self.max_event_ahead_s / 3600:g} h is accepted: check the producer's "
                       f"clock and the time zone of its event times")

    def _forward(self, source: Source, rec: _Record, employee: str, ekey: bytes,
                 home: int) -> Result:
        copy = Outgoing(source, ekey, rec.value, _Origin.of(rec).forwarded_headers(), home)
        size = copy.size
        if size > self.max_record_bytes:
            return self._refuse(Refusal(
                dead_letters.OUTPUT_TOO_LARGE,
                f"the record belongs in partition {home} (its employee's) but a copy of it "
                f"there would be {size} bytes, more than max_record_bytes "
                f"{self.max_record_bytes}: produce it keyed by its employee_id"), rec)
        return Result("forwarded", [copy], employee_id=employee)

    # ---- deciding, all or nothing ---------------------------------------------------------

    def _decide(self, event: Event, rec: _Record, employee: str, ekey: bytes) -> Result:
        stored = self.states.get(employee)
        # A new employee's state is stored only once one of its records was processed.
        point = None if stored is None else self._rollback_point(employee, stored)
        state = EmployeeState(employee) if stored is None else stored
        try:
            decision = self._apply(state, event)
            if decision.outcome == "duplicate":
                return Result("duplicate", employee_id=employee)
            if decision.outcome == "rejected" and not decision.records:
                return self._refuse(Refusal(decision.code, decision.reason), rec, employee)
            # (a rejected event may still carry records: the retirement of a standard the
            # playbook no longer has, decided on the employee's next event whatever it is)
            out = []
            for record in decision.records:
                name = _OUTPUT_TOPIC.get(type(record), "execution-scores")
                out.append(Outgoing(name, ekey, record.model_dump_json().encode()))
            refusal = self._too_large(out, employee, ekey, state, point)
        except Exception as exc:
            log.exception("cannot decide on %s/%s/%s; employee %s's state is put back as it "
                          "was", rec.topic, rec.partition, rec.offset, employee)
            refusal = Refusal(dead_letters.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        if refusal is not None:
            restored = None if point is None else self._roll_back(employee, point, rec.partition)
            return self._refuse(refusal, rec, employee, restored)
        if point is None:
            self.states.put(employee, state, rec.partition)
            point = self._new_point(employee, state, None)
        point.redo.append(rec.value)  # type: ignore[arg-type]  # (not None: it was parsed)
        point.kinds.append(_INTERACTION if isinstance(event, Interaction) else _COMPLETION)
        self._redo_total += 1
        if decision.outcome == "rejected":
            refused = self._refuse(Refusal(decision.code, decision.reason), rec, employee, state)
            refused.outgoing[:0] = out
            refused.records = decision.records
            return refused
        return Result("processed", out, decision.records, employee, state)

    def _apply(self, state: EmployeeState, event: Event) -> Decision:
        if isinstance(event, Interaction):
            return self.engine.on_interaction(state, event)
        return self.engine.on_completion(state, event)

    def _too_large(self, out: list[Outgoing], employee: str, ekey: bytes, state: EmployeeState,
                   point: RollbackPoint | None) -> Refusal | None:
        limit = self.max_record_bytes
        room = limit - record_size(ekey, None)  # for the value of an output keyed by employee
        for o in out:
            if len(o.value or b"") > room:
                return Refusal(dead_letters.OUTPUT_TOO_LARGE,
                               f"its {o.topic} record would be {o.size} bytes, more than "
                               f"max_record_bytes {limit}")
        # The state is written to the changelog too. Encoding it costs as much as a decision:
        # only a state that was already half the limit at its last snapshot can have grown
        # past it in the REDO_MAX records since (a record adds far less than limit / 2 / REDO_MAX).
        if point is not None and point.snapshot is not None and len(point.snapshot) > limit // 2:
            size = record_size(ekey, state.to_bytes())
            if size > limit:
                return Refusal(dead_letters.OUTPUT_TOO_LARGE,
                               f"employee {employee}'s state would be {size} bytes on the "
                               f"changelog, more than max_record_bytes {limit}; it shrinks "
                               f"as its events pass the dedupe horizon")
        return None

    def _rollback_point(self, employee: str, stored: EmployeeState) -> RollbackPoint:
        point = self._points.get(employee)
        if point is not None and point.state is stored and len(point.redo) < REDO_MAX:
            return point
        return self._new_point(employee, stored, stored.to_bytes())

    def _new_point(self, employee: str, state: EmployeeState,
                   snapshot: bytes | None) -> RollbackPoint:
        old = self._points.pop(employee, None)
        if old is not None:
            self._redo_total -= len(old.redo)
        if len(self._points) >= POINTS_MAX or self._redo_total >= REDO_TOTAL_MAX:
            self._points.clear()
            self._redo_total = 0
        point = self._points[employee] = RollbackPoint(state, snapshot)
        return point

    def _roll_back(self, employee: str, point: RollbackPoint, partition: int) -> EmployeeState:
        """Put the employee's state back as it was before the record being decided."""
        state = (EmployeeState(employee) if point.snapshot is None
                 else EmployeeState.from_bytes(point.snapshot))
        for kind, value in zip(point.kinds, point.redo, strict=True):
            # the same decisions again; their records are out already
            model = Interaction if kind == _INTERACTION else LessonCompletion
            self._apply(state, model.model_validate_json(value))
        self.states.put(employee, state, partition)
        point.state = state
        return state

    # ---- dead letters ---------------------------------------------------------------------

    def _refuse(self, refusal: Refusal, rec: _Record, employee: str | None = None,
                restored: EmployeeState | None = None) -> Result:
        return Result("dead_lettered", [self.dead_letter(refusal, rec)], employee_id=employee,
                      state=restored, error_type=refusal.error_type)

    def dead_letter(self, refusal: Refusal, rec: _Record) -> Outgoing:
        """The dead letter of `rec`: the original record (of a forwarded copy: the original's
        key and position), cut to max_record_bytes if need be (models/dead_letters.py)."""
        origin = _Origin.of(rec)
        hdrs = dead_letters.headers(refusal, origin.topic, origin.partition, origin.offset)
        if origin.copy_at is not None:
            hdrs.append((dead_letters.H_FORWARDED_COPY, origin.copy_at.encode()))
        key, value, limit = origin.key, rec.value, self.max_record_bytes
        if record_size(key, value, hdrs) <= limit:
            return Outgoing(DEAD_LETTERS, key, value, hdrs)
        cut = "key"
        if value:  # the value is cut first: the key also routes the dead letter
            hdrs += dead_letters.identity_headers("value", value)
            marked = [*hdrs, (dead_letters.H_TRUNCATED, b"value")]
            room = limit - record_size(key, b"", marked)
            if room >= 0:
                return Outgoing(DEAD_LETTERS, key, value[:room], marked)
            value, cut = b"", "key,value"
        hdrs += dead_letters.identity_headers("key", key or b"")
        hdrs.append((dead_letters.H_TRUNCATED, cut.encode()))
        room = max(0, limit - record_size(b"", value, hdrs))
        return Outgoing(DEAD_LETTERS, (key or b"")[:room], value, hdrs)
