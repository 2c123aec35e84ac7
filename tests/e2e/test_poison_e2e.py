"""Poison records end to end: a real worker on the embedded broker is fed records that used to
crash it (a value larger than its producer may send, event times at the end of the calendar or
far ahead of the broker's clock, null keys and values) between good ones. It dead-letters each
one as the original (cut to fit, with the original's size and digest, when too large), processes
the good ones, stays up, and commits past them: a restarted worker does not meet them again."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.record_processor import MAX_RECORD_BYTES, partition_for, record_size
from e2e.harness import DAY1, InteractionMaker, Pipeline, completion, wait_until
from models import dead_letters as dl
from streams import topics

HUGE = 1_100_000  # bytes: more than the worker's producer may send in one record


def big_producer(p: Pipeline) -> KafkaProducer:
    """A producer that may send the 1.1 MB records a stock Kafka accepts."""
    return KafkaProducer(bootstrap_servers=p.settings.bootstrap_servers, acks="all",
                         enable_idempotence=False, max_in_flight_requests_per_connection=1,
                         max_request_size=4_000_000, client_id="frontline-e2e-poison")


def read_all(p: Pipeline, name: str, count: int, timeout_s: float = 60.0) -> list:
    """Every record of a topic, as kafka-python gives them (null keys and values kept),
    once there are at least `count`."""
    topic = p.topic(name)
    consumer = KafkaConsumer(bootstrap_servers=p.settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100,
                             max_partition_fetch_bytes=4_000_000,
                             client_id="frontline-e2e-poison-reader")
    try:
        parts = [TopicPartition(topic, n) for n in range(p.partitions_of(name))]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.mark.e2e
def test_poison_records_are_dead_lettered_as_they_were_and_the_worker_goes_on(
        pipeline: Pipeline) -> None:
    p = pipeline
    n_parts = p.partitions_of(topics.INTERACTIONS)
    emp = "emp-poison"
    home = partition_for(emp.encode(), n_parts)
    make = InteractionMaker(emp)
    future = datetime.now(UTC) + timedelta(days=3)
    invalid_huge = b'{"event_id": "' + b"x" * HUGE + b'"}'
    valid_huge = make(notes="y" * HUGE)  # an ignored extra field
    misplaced_huge = make(notes="z" * HUGE)
    end_of_time = json.loads(make())
    end_of_time["started_at"] = end_of_time["ended_at"] = "9999-12-31T23:59:59-05:00"
    poison: list[tuple[bytes | None, bytes | None, int | None]] = [
        (emp.encode(), invalid_huge, home),
        (emp.encode(), valid_huge, home),  # processed: its outputs are small
        (b"misplaced", misplaced_huge, (home + 1) % n_parts),  # too large to forward
        (emp.encode(), None, home),  # a tombstone
        (None, b"[]", home),  # no key
        (emp.encode(), json.dumps(end_of_time).encode(), home),
        (emp.encode(), InteractionMaker(emp, start=future)(), home),  # 3 days ahead of the
        # broker's clock
    ]
    good = [make(csat=5) for _ in range(5)]
    producer = big_producer(p)
    try:
        sent = [producer.send(p.topic(topics.INTERACTIONS), key=k, value=v, partition=part)
                for k, v, part in poison]
        sent += [producer.send(p.topic(topics.INTERACTIONS), key=emp.encode(), value=v,
                               partition=home) for v in good]
        producer.flush(30)
        where = [f.get(timeout=30) for f in sent]
    finally:
        producer.close(5)

    events = p.wait_events({"processed": 1 + len(good), "dead_lettered": 6})
    assert events["forwarded"] == 0
    assert p.worker is not None and p.worker.poll() is None, f"the worker died; {p.log_tail()}"

    letters = read_all(p, topics.DEAD_LETTERS, 6)
    assert len(letters) == 6
    by_source = {(int(dict(r.headers)[dl.H_PARTITION]), int(dict(r.headers)[dl.H_OFFSET])): r
                 for r in letters}
    expected = {0: "invalid_event", 2: "output_too_large", 3: "not_json", 4: "not_an_object",
                5: "invalid_event", 6: "implausible_time"}
    assert {(where[i].partition, where[i].offset): t for i, t in expected.items()} == \
        {at: dict(r.headers)[dl.H_ERROR_TYPE].decode() for at, r in by_source.items()}
    for i in expected:
        letter, (key, value, _) = by_source[(where[i].partition, where[i].offset)], poison[i]
        h = dict(letter.headers)
        assert letter.key == key, i
        assert h[dl.H_ID] == dl.dead_letter_id(p.topic(topics.INTERACTIONS), where[i].partition,
                                               where[i].offset).encode()
        assert record_size(letter.key, letter.value, letter.headers) <= MAX_RECORD_BYTES
        if value is not None and len(value) > HUGE:  # cut to fit, and says so
            assert h[dl.H_TRUNCATED] == b"value"
            assert h[dl.H_VALUE_SIZE] == str(len(value)).encode()
            assert h[dl.H_VALUE_SHA256] == hashlib.sha256(value).hexdigest().encode()
            assert value.startswith(letter.value)
        else:  # the original, byte for byte; a null value stays null
            assert letter.value == value, i
            assert dl.H_TRUNCATED not in h

    p.reader.wait_for({topics.EXECUTION_SCORES: 1 + len(good)}, "the scores")
    scores = [json.loads(o.value) for o in p.reader.of(topics.EXECUTION_SCORES)]
    assert sorted(s["event_id"] for s in scores) == sorted(
        json.loads(v)["event_id"] for v in [valid_huge, *good])

    # a completion keyed by the learning system's own key, in another partition than its
    # employee's: forwarded, refused at home, dead-lettered as the original
    stray = completion(emp, "asg-unknown", "cmp-stray", DAY1)
    c_parts = p.partitions_of(topics.LESSON_COMPLETIONS)
    elsewhere = (partition_for(emp.encode(), c_parts) + 1) % c_parts
    [orig] = p.produce([(b"lms-key", stray)], topics.LESSON_COMPLETIONS, partition=elsewhere)
    p.wait_events({"forwarded": 1, "dead_lettered": 1}, topics.LESSON_COMPLETIONS)
    [refused] = [r for r in read_all(p, topics.DEAD_LETTERS, 7)
                 if dict(r.headers)[dl.H_TOPIC] == p.topic(topics.LESSON_COMPLETIONS).encode()]
    h = dict(refused.headers)
    assert (refused.key, refused.value) == (b"lms-key", stray)
    assert (h[dl.H_PARTITION], h[dl.H_OFFSET]) == (str(elsewhere).encode(),
                                                   str(orig.offset).encode())
    assert h[dl.H_ERROR_TYPE] == b"rejected"
    assert h[dl.H_FORWARDED_COPY].startswith(
        f"{p.topic(topics.LESSON_COMPLETIONS)}/{partition_for(emp.encode(), c_parts)}/".encode())

    # it committed past them all: a restarted worker meets none of them again
    assert p.stop_worker() == 0, p.log_tail()
    p.start_worker()
    after = make(csat=4)
    p.produce([(emp.encode(), after)], partition=home)
    wait_until(lambda: any(json.loads(o.value)["event_id"] == json.loads(after)["event_id"]
                           for o in p.reader.of(topics.EXECUTION_SCORES)),
               "the restarted worker to score a new record", explain=p.log_tail)
    assert p.events() == {"processed": 1, "duplicate": 0, "dead_lettered": 0, "forwarded": 0}
    assert p.worker.poll() is None
