"""No single input record can crash, stall or corrupt the worker: the record processor at its
edges (oversized records, event times at the ends of the calendar or ahead of the broker's
clock, a decision that fails half-way, refused records of new employees, null keys and values,
forwarded copies, lenient numbers), and dead letters that are the original record."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.record_processor import (
    H_FORWARDED_FROM,
    H_FORWARDED_KEY,
    H_FORWARDED_KEY_NULL,
    MAX_EVENT_AHEAD_S,
    MAX_RECORD_BYTES,
    REDO_MAX,
    RecordProcessor,
    Result,
    header,
    partition_for,
    record_size,
)
from models import dead_letters
from models.dead_letters import dead_letter_id
from models.events import Interaction
from models.playbook import Playbook
from streams.settings import Settings

PARTS = 4
TOPIC = "t-interactions"
COMPLETIONS = "t-lesson-completions"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the first interaction factories' start


class Store(dict[str, EmployeeState]):
    def put(self, key: str, state: EmployeeState, partition: int = 0) -> None:
        self[key] = state


class PoisonedEngine(DecisionEngine):
    """Fails on the events named in `poison` after the decision has changed the state (gaps
    opened, lessons assigned): the worst moment."""

    def __init__(self, playbook: Playbook) -> None:
        super().__init__(playbook)
        self.poison: set[str] = set()

    def _interaction_rewards(self, state: EmployeeState, ev: Interaction, *args: Any) -> Any:
        if ev.event_id in self.poison:
            raise RuntimeError(f"poisoned {ev.event_id}")
        return super()._interaction_rewards(state, ev, *args)


def make(playbook: Playbook, store: Store | None = None, engine: DecisionEngine | None = None,
         **kwargs: Any) -> RecordProcessor:
    return RecordProcessor(engine or DecisionEngine(playbook),
                           Store() if store is None else store, lambda _: PARTS, **kwargs)


def home(employee_id: str) -> int:
    return partition_for(employee_id.encode(), PARTS)


def raw(ev: Any) -> bytes:
    return ev.model_dump_json().encode()


BY_EMPLOYEE = object()


def put(p: RecordProcessor, value: bytes | None, employee: str = "emp-1", *,
        key: Any = BY_EMPLOYEE, partition: int | None = None, offset: int = 7,
        source: str = "interactions", **kwargs: Any) -> Result:
    """Process one record; by default keyed by and in the partition of `employee`."""
    topic = TOPIC if source == "interactions" else COMPLETIONS
    return p.process(source, topic, home(employee) if partition is None else partition,  # type: ignore[arg-type]
                     offset, employee.encode() if key is BY_EMPLOYEE else key, value, **kwargs)


def hdrs(result: Result, i: int = 0) -> dict[str, bytes]:
    return dict(result.outgoing[i].headers or [])


def error_type(result: Result) -> str:
    assert result.outcome == "dead_lettered", result
    return hdrs(result)[dead_letters.H_ERROR_TYPE].decode()


def with_extra(ev: Interaction, **extra: Any) -> bytes:
    record = json.loads(raw(ev))
    record.update(extra)
    return json.dumps(record).encode()


def snapshot(store: Store, employee: str = "emp-1") -> bytes:
    return store[employee].to_bytes()


# ---- 1. oversized records ---------------------------------------------------------------------


def test_an_oversized_invalid_record_is_dead_lettered_cut_to_fit_with_its_identity(playbook):
    p = make(playbook)
    value = b'{"event_id": "' + b"x" * 1_100_000 + b'"}'
    result = put(p, value, offset=41)
    assert error_type(result) == "invalid_event"
    [letter] = result.outgoing
    h = hdrs(result)
    assert letter.size <= MAX_RECORD_BYTES
    assert letter.key == b"emp-1"
    assert MAX_RECORD_BYTES - 2000 < len(letter.value or b"") < len(value)
    assert value.startswith(letter.value or b"?")
    assert h[dead_letters.H_TRUNCATED] == b"value"
    assert h[dead_letters.H_VALUE_SIZE] == str(len(value)).encode()
    assert h[dead_letters.H_VALUE_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert h[dead_letters.H_OFFSET] == b"41"
    assert h[dead_letters.H_ID] == dead_letter_id(TOPIC, home("emp-1"), 41).encode()


def test_a_dead_letter_that_fits_keeps_the_original_bytes(playbook):
    value = b'{"event_id": "' + b"x" * 900_000 + b'"}'
    result = put(make(playbook), value)
    assert result.outgoing[0].value == value
    assert dead_letters.H_TRUNCATED not in hdrs(result)


def test_a_key_too_large_for_any_dead_letter_is_cut_too(playbook):
    key = b"k" * 2_000_000
    value = b"v" * 500_000
    result = put(make(playbook), value, key=key)
    [letter] = result.outgoing
    h = hdrs(result)
    assert letter.size <= MAX_RECORD_BYTES
    assert h[dead_letters.H_TRUNCATED] == b"key,value"
    assert letter.value == b"" and key.startswith(letter.key or b"?")
    assert h[dead_letters.H_KEY_SIZE] == b"2000000"
    assert h[dead_letters.H_KEY_SHA256] == hashlib.sha256(key).hexdigest().encode()
    assert h[dead_letters.H_VALUE_SIZE] == b"500000"


def test_a_valid_record_with_a_huge_ignored_field_is_processed(playbook, interactions):
    value = with_extra(interactions(), notes="x" * 1_100_000)
    result = put(make(playbook), value)
    assert result.outcome == "processed"
    assert all(o.size < 10_000 for o in result.outgoing)


def test_a_record_too_large_to_forward_is_dead_lettered_not_forwarded(playbook, interactions):
    store = Store()
    p = make(playbook, store)
    value = with_extra(interactions(), notes="x" * 1_100_000)
    elsewhere = (home("emp-1") + 1) % PARTS
    result = put(p, value, partition=elsewhere, key=b"wrong-key")
    assert error_type(result) == "output_too_large"
    assert b"belongs in partition" in hdrs(result)[dead_letters.H_ERROR_MESSAGE]
    assert result.outgoing[0].size <= MAX_RECORD_BYTES and result.outgoing[0].key == b"wrong-key"
    assert hdrs(result)[dead_letters.H_PARTITION] == str(elsewhere).encode()
    assert not store


def test_a_large_record_that_fits_is_forwarded_byte_for_byte(playbook, interactions):
    value = with_extra(interactions(), notes="x" * 900_000)
    elsewhere = (home("emp-1") + 1) % PARTS
    result = put(make(playbook), value, partition=elsewhere, key=b"wrong-key")
    assert result.outcome == "forwarded"
    [copy] = result.outgoing
    assert (copy.value, copy.key, copy.partition) == (value, b"emp-1", home("emp-1"))
    assert copy.size <= MAX_RECORD_BYTES


def test_an_output_too_large_dead_letters_the_input_and_leaves_the_state(playbook,
                                                                           interactions):
    store = Store()
    p = make(playbook, store)
    first = put(p, raw(interactions()))
    score_size = first.outgoing[0].size
    before = snapshot(store)
    p.max_record_bytes = score_size - 50  # the next score does not fit
    result = put(p, raw(interactions()))
    assert error_type(result) == "output_too_large"
    assert b"execution-scores record would be" in hdrs(result)[dead_letters.H_ERROR_MESSAGE]
    assert result.outgoing[0].size <= p.max_record_bytes
    assert snapshot(store) == before


def test_a_state_too_large_for_the_changelog_dead_letters_the_input(playbook,
                                                                   interaction_factory):
    store = Store()
    make_ev = interaction_factory(step=timedelta(minutes=1))
    p = make(playbook, store)
    for _ in range(1500):  # a state larger than any output (each event id is remembered)
        put(p, raw(make_ev()))
    before = snapshot(store)
    assert len(before) > 3000
    limit = record_size(b"emp-1", before) + 2  # the state fits now, a few more events do not
    p = make(playbook, store, max_record_bytes=limit)
    for _ in range(20):
        before = snapshot(store)
        result = put(p, raw(make_ev()))
        if result.outcome != "processed":
            break
    assert error_type(result) == "output_too_large"
    assert b"state would be" in hdrs(result)[dead_letters.H_ERROR_MESSAGE]
    assert snapshot(store) == before


def test_the_limits_agree_with_the_settings():
    settings = Settings()
    assert settings.max_record_bytes == MAX_RECORD_BYTES < 1_000_000  # Faust's producer default
    assert settings.max_event_ahead_hours * 3600 == MAX_EVENT_AHEAD_S


def test_record_size_is_an_upper_bound_of_what_aiokafka_counts():
    aiokafka = pytest.importorskip("aiokafka.record.default_records")
    builder = aiokafka.DefaultRecordBatchBuilder
    for key, value, headers in [(None, None, []), (b"k", b"v" * 100_000, [("h", b"x")]),
                                (b"e" * 300, b"{}", [("frontline.source.topic", b"t" * 200)])]:
        assert record_size(key, value, headers) >= builder.estimate_size_in_bytes(
            key, value, headers)


# ---- 2. event times ---------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-05:00",
                                "0001-01-01T01:00:00+05:00"])
def test_event_times_off_the_calendar_are_invalid_and_shut_nobody_out(playbook, interactions, at):
    store = Store()
    p = make(playbook, store)
    record = json.loads(raw(interactions()))
    record["started_at"] = record["ended_at"] = at
    result = put(p, json.dumps(record).encode())
    assert error_type(result) == "invalid_event"
    assert hdrs(result)[dead_letters.H_ERROR_MESSAGE].startswith(b"started_at: Input should be")
    assert not store
    # the employee's real events go on being processed (before, 9999 made them all too late)
    assert put(p, raw(interactions())).outcome == "processed"


def test_an_event_time_too_far_ahead_of_the_broker_timestamp_is_implausible(playbook,
                                                                             interactions):
    store = Store()
    p = make(playbook, store)
    ev = interactions()
    now = ev.ended_at.timestamp() - MAX_EVENT_AHEAD_S - 1  # the broker's clock
    result = put(p, raw(ev), timestamp=now)
    assert error_type(result) == "implausible_time"
    message = hdrs(result)[dead_letters.H_ERROR_MESSAGE].decode()
    assert message.startswith(f"ended_at {ev.ended_at.isoformat()} is 24.0 h after the record's "
                              f"broker timestamp")
    assert "at most 24 h" in message
    assert not store
    # just within the bound, and any time older (a backfill), are fine
    assert put(p, raw(ev), timestamp=now + 1).outcome == "processed"
    older = interactions(at=T0 - timedelta(days=1))
    assert put(p, raw(older), timestamp=now + 400 * 86400).outcome == "processed"


def test_the_bound_ahead_is_a_setting(playbook, interactions):
    p = make(playbook, max_event_ahead_s=3600.0)
    ev = interactions()
    at = ev.ended_at.timestamp()
    assert error_type(put(p, raw(ev), timestamp=at - 3601)) == "implausible_time"
    assert put(p, raw(ev), timestamp=at - 3600).outcome == "processed"


@pytest.mark.parametrize("timestamp", [None, 0, 0.0, -0.001])
def test_without_a_broker_timestamp_only_the_fixed_range_applies(playbook, interaction_factory,
                                                                  timestamp):
    far = interaction_factory(start=T0.replace(year=2099))()
    assert put(make(playbook), raw(far), timestamp=timestamp).outcome == "processed"


def test_a_completion_too_far_ahead_is_implausible(playbook, completion):
    done = completion("asg-1", T0 + timedelta(days=3))
    result = put(make(playbook), raw(done), source="lesson-completions",
                 timestamp=T0.timestamp())
    assert error_type(result) == "implausible_time"
    assert hdrs(result)[dead_letters.H_ERROR_MESSAGE].startswith(b"completed_at ")


def test_the_time_checks_decide_the_same_on_a_replay(playbook, interaction_factory):
    """Only the record and its own broker timestamp count, never the wall clock."""
    def run() -> list[tuple[str, list[Any]]]:
        make_ev = interaction_factory(start=T0)
        p = make(playbook)
        out = []
        for i in range(40):
            ev = make_ev(fail=("empathy",) if i % 3 else ())
            ts = T0.timestamp() + (i - 20) * 3600 * 3  # some far behind, some far ahead
            r = put(p, raw(ev), timestamp=ts, offset=i)
            out.append((r.outcome, [(o.topic, o.key, o.value, o.headers) for o in r.outgoing]))
        return out

    first = run()
    assert {o for o, _ in first} == {"processed", "dead_lettered"}
    assert run() == first


# ---- 3. a decision is all or nothing ----------------------------------------------------------


def opens(result: Result) -> bool:
    return any(b'"status":"opened"' in (o.value or b"") for o in result.outgoing)


@pytest.mark.parametrize("warmup", [0, 5, REDO_MAX + 6])
def test_a_failed_decision_puts_the_state_back_exactly(playbook, interaction_factory, warmup):
    make_ev = interaction_factory(start=T0)
    history = [make_ev() for _ in range(warmup)]  # a rollback point with events to redo
    events = [make_ev(fail=("empathy",)) for _ in range(60)]
    scratch = make(playbook)
    for ev in history:
        put(scratch, raw(ev))
    at = next(i for i, ev in enumerate(events) if opens(put(scratch, raw(ev))))
    # the decision of the event that opens the gap fails after opening it and assigning its
    # lesson; the reference never sees that event
    engine = PoisonedEngine(playbook)
    engine.poison.add(events[at].event_id)
    store, reference = Store(), Store()
    p, ref = make(playbook, store, engine), make(playbook, reference)
    for ev in history + events[:at]:
        assert put(p, raw(ev)).outcome == put(ref, raw(ev)).outcome == "processed"
    before = store["emp-1"].to_bytes()

    result = put(p, raw(events[at]))
    assert error_type(result) == "internal_error"
    assert b"RuntimeError: poisoned" in hdrs(result)[dead_letters.H_ERROR_MESSAGE]
    assert store["emp-1"].to_bytes() == before == reference["emp-1"].to_bytes()
    assert result.state is store["emp-1"]  # what the pipeline saves: the state put back

    # the next event opens the gap for real, and every record refers to what was published
    opened = []
    for ev in events[at + 1:at + 4]:
        mine, theirs = put(p, raw(ev)), put(ref, raw(ev))
        assert [(o.topic, o.value) for o in mine.outgoing] == \
            [(o.topic, o.value) for o in theirs.outgoing]
        assert store["emp-1"].to_bytes() == reference["emp-1"].to_bytes()
        opened.append(opens(mine))
    assert opened[0]


def test_a_failed_decision_of_a_new_employee_stores_nothing(playbook, interactions):
    store = Store()
    engine = PoisonedEngine(playbook)
    ev = interactions()
    engine.poison.add(ev.event_id)
    result = put(make(playbook, store, engine), raw(ev))
    assert error_type(result) == "internal_error"
    assert not store and result.state is None


# ---- 4. refused records leave no state --------------------------------------------------------


def test_refused_records_of_new_employees_leave_no_state(playbook, interaction_factory,
                                                         completion):
    store = Store()
    p = make(playbook, store)
    for i in range(1000):
        employee = f"new-{i}"
        done = completion(f"asg-{i}", T0, employee_id=employee)
        assert error_type(put(p, raw(done), employee, source="lesson-completions")) == "rejected"
        ev = interaction_factory(employee)()
        assert error_type(put(p, raw(ev), employee, timestamp=T0.timestamp() - 3 * 86400)) == \
            "implausible_time"
    assert not store
    assert not p._points  # nor anything kept to roll them back


# ---- 5. dead letters are the original ---------------------------------------------------------


def test_a_null_key_and_a_tombstone_stay_null(playbook):
    p = make(playbook)
    tombstone = put(p, None, key=None)
    assert error_type(tombstone) == "not_json"
    assert tombstone.outgoing[0].key is None and tombstone.outgoing[0].value is None
    assert b"tombstone" in hdrs(tombstone)[dead_letters.H_ERROR_MESSAGE]
    keyless = put(p, b"[]", key=None)
    assert (keyless.outgoing[0].key, keyless.outgoing[0].value) == (None, b"[]")


@pytest.mark.parametrize("key", [b"misrouted", None])
def test_a_forwarded_copy_carries_the_original_key(playbook, interactions, key):
    elsewhere = (home("emp-1") + 1) % PARTS
    result = put(make(playbook), raw(interactions()), key=key, partition=elsewhere, offset=12)
    assert result.outcome == "forwarded"
    h = hdrs(result)
    assert h[H_FORWARDED_FROM] == f"{TOPIC}/{elsewhere}/12".encode()
    if key is None:
        assert h[H_FORWARDED_KEY_NULL] == b"true" and H_FORWARDED_KEY not in h
    else:
        assert h[H_FORWARDED_KEY] == key and H_FORWARDED_KEY_NULL not in h


@pytest.mark.parametrize("key", [b"learning-system-key", b"", None])
def test_a_forwarded_copy_refused_at_home_is_dead_lettered_as_the_original(playbook, completion,
                                                                           key):
    p = make(playbook)
    done = raw(completion("asg-unknown", T0))
    elsewhere = (home("emp-1") + 2) % PARTS
    forwarded = put(p, done, key=key, partition=elsewhere, offset=5, source="lesson-completions")
    [copy] = forwarded.outgoing
    letters = []
    for copy_offset in (88, 93):  # a crash forwarded it twice: two copies, one dead letter id
        result = p.process("lesson-completions", COMPLETIONS, copy.partition, copy_offset,
                           copy.key, copy.value, headers=copy.headers)
        assert error_type(result) == "rejected"
        letters.append(result.outgoing[0])
    for i, letter in enumerate(letters):
        h = dict(letter.headers or [])
        assert letter.key == key and letter.value == done
        assert (h[dead_letters.H_TOPIC], h[dead_letters.H_PARTITION], h[dead_letters.H_OFFSET]) \
            == (COMPLETIONS.encode(), str(elsewhere).encode(), b"5")
        assert h[dead_letters.H_FORWARDED_COPY] == \
            f"{COMPLETIONS}/{home('emp-1')}/{(88, 93)[i]}".encode()
    ids = {dict(letter.headers or [])[dead_letters.H_ID] for letter in letters}
    assert ids == {dead_letter_id(COMPLETIONS, elsewhere, 5).encode()}


def test_a_copy_forwarded_again_keeps_the_original(playbook, interactions):
    p = make(playbook)
    first = put(p, raw(interactions()), key=None, partition=(home("emp-1") + 1) % PARTS,
                offset=3)
    [copy] = first.outgoing
    # the partitions changed in between: the copy is not home either
    again = p.process("interactions", TOPIC, (home("emp-1") + 2) % PARTS, 70, copy.key,
                      copy.value, headers=dict(copy.headers or []))
    assert again.outcome == "forwarded"
    assert hdrs(again) == hdrs(first)


@pytest.mark.parametrize("headers", [
    None, [], (), {}, [("a", b"1")], {"a": b"1"}, [("a", None)], [("a", "text")],
    [(H_FORWARDED_FROM, b"no-slashes")], [(H_FORWARDED_FROM, b"/1/2")],
    [(H_FORWARDED_FROM, b"t/x/y")], [(H_FORWARDED_FROM, b"\xff/1/2")], [(H_FORWARDED_FROM, None)],
    [("a", b"1", b"extra")], [42], 42, "headers", [(b"bytes-name", b"1")],
])
def test_any_headers_are_read_without_failing(playbook, headers):
    result = put(make(playbook), b"[]", offset=9, headers=headers)
    assert error_type(result) == "not_an_object"
    h = hdrs(result)
    assert (h[dead_letters.H_TOPIC], h[dead_letters.H_OFFSET]) == (TOPIC.encode(), b"9")


def test_header_reads_lists_and_mappings():
    assert header([("a", b"1"), ("b", b"2"), ("a", b"3")], "a") == b"3"
    assert header({"a": b"1"}, "a") == b"1"
    assert header([(b"a", b"1")], "a") == b"1"
    assert header(None, "a") is None and header([("a", None)], "a") is None


# ---- 6. strict numbers and versions ------------------------------------------------------------


@pytest.mark.parametrize("field,number", [("wait_s", b"Infinity"), ("hold_s", b"NaN"),
                                          ("talk_s", b"1e400"), ("sentiment", b"NaN")])
def test_non_finite_numbers_are_refused(playbook, interactions, field, number):
    value = with_extra(interactions(), **{field: 123456}).replace(b"123456", number)
    result = put(make(playbook), value)
    assert error_type(result) == "invalid_event"
    assert hdrs(result)[dead_letters.H_ERROR_MESSAGE].startswith(field.encode())


@pytest.mark.parametrize("version", [True, 1.0])
def test_a_schema_version_that_only_equals_1_is_refused(playbook, interactions, version):
    result = put(make(playbook), with_extra(interactions(), schema_version=version))
    assert error_type(result) == "unsupported_schema_version"


# ---- 7. whatever the record, process never raises ---------------------------------------------


def test_a_bug_outside_the_decision_costs_one_record(playbook, interactions):
    p = RecordProcessor(DecisionEngine(playbook), Store(), lambda _: 0)  # no partitions
    result = put(p, raw(interactions()))
    assert error_type(result) == "internal_error"
    assert b"ZeroDivisionError" in hdrs(result)[dead_letters.H_ERROR_MESSAGE]


def test_no_record_makes_process_raise_or_ask_for_a_record_too_large(playbook,
                                                                      interaction_factory):
    rng = random.Random(20261202)
    make_ev = interaction_factory("emp-f", start=T0)
    good = json.loads(raw(make_ev()))
    limit = 65_536
    p = make(playbook, max_record_bytes=limit)
    pieces: list[Any] = [None, True, 1.0, -1, 2**70, "", "x" * 300, [], {}, "NaN", 1e308,
                         "9999-12-31T23:59:59-05:00", {"a": [1] * 50}, "\u0000", "é" * 100]
    for i in range(600):
        kind = i % 6
        if kind == 0:
            value: bytes | None = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:
            record = dict(good, event_id=f"f-{i}")
            record[rng.choice(list(good))] = rng.choice(pieces)
            value = json.dumps(record).encode()
        elif kind == 2:
            value = json.dumps(dict(good, event_id=f"f-{i}", pad="p" * rng.randrange(
                60_000, 70_000))).encode()
        elif kind == 3:
            value = json.dumps(good).encode()[: rng.randrange(1, 300)]
        elif kind == 4:
            value = None if rng.random() < 0.5 else b"1e400"
        else:
            value = json.dumps(dict(good, event_id=f"f-{i}", employee_id=f"e{rng.randrange(9)}",
                                    ended_at=(T0 + timedelta(hours=i)).isoformat())).encode()
        key = rng.choice([None, b"", b"emp-f", rng.randbytes(20), b"k" * 70_000])
        headers = rng.choice([None, [("x", rng.randbytes(5))], {"frontline.forwarded-from":
                              b"t/1/2"}, [(H_FORWARDED_FROM, rng.randbytes(8))]])
        result = p.process(rng.choice(["interactions", "lesson-completions"]), TOPIC,
                           rng.randrange(PARTS), i, key, value, headers=headers,
                           timestamp=rng.choice([None, T0.timestamp(), 1e12]))
        assert result.outcome in ("processed", "duplicate", "dead_lettered", "forwarded")
        assert all(o.size <= limit for o in result.outgoing), (i, result.outcome)
