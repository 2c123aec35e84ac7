"""No single record can stop or stall the ledger writer, on SQLite and on a real PostgreSQL
server: a record it cannot read or turn into rows, or one the database refuses, goes to the
quarantine with the reason and every other record of the batch is written exactly once; an
outage, or a database that refuses every record of a kind, is retried and quarantines nothing.
(The writer against a real broker: tests/e2e/test_ledger_poison_e2e.py.)"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from ledger.decisions import T0, assigned, completion, simulated_decisions
from ledger.snapshot import snapshot
from sqlalchemy import Engine, inspect, select

from models.events import BonusAward, LessonCompletion, PerformanceGap
from models.ledger import Award, Quarantined
from models.ledger import Base as LedgerBase
from streams import ledger_sink, topics
from streams.cli import main
from streams.ledger_reconcile import ledger_ids, quarantined_ids, reconcile
from streams.ledger_schema import MIGRATIONS, create_ledger_engine, current_revision, migrate
from streams.ledger_sink import QUARANTINED, BatchWriter, RetryLater, is_outage, sweep
from streams.ledger_store import (
    INVALID_NUMBER,
    INVALID_TEXT,
    OUT_OF_RANGE,
    OVERFLOW,
    TOO_LONG,
    UNPARSEABLE,
    LedgerRecord,
    LedgerStore,
    Unstorable,
    check_record,
)

PREFIX = "site-a."  # topics as named on the broker: the contract's names with a prefix
NAMES = {PREFIX + name: name for name in ledger_sink.SOURCES}


@dataclass(frozen=True)
class Message:
    """What the consumer hands the writer (the fields of kafka-python's ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def topic_of(record: LedgerRecord) -> str:
    return topics.LESSON_COMPLETIONS if isinstance(record, LessonCompletion) else \
        topics.topic_of(record)


def messages(values: list[tuple[str, bytes | None]], partition: int = 0) -> list[Message]:
    """(contract topic, value) pairs as consecutive records of one partition of each topic."""
    offsets: dict[str, int] = {}
    out = []
    for name, value in values:
        offset = offsets[name] = offsets.get(name, -1) + 1
        out.append(Message(PREFIX + name, partition, offset, f"key-{offset}".encode(), value))
    return out


def encoded(record: LedgerRecord) -> tuple[str, bytes]:
    return topic_of(record), record.model_dump_json().encode()


def replaced(record: LedgerRecord, old: str, new: str) -> tuple[str, bytes]:
    """The record's JSON with one piece of its text replaced (for what json.dumps cannot
    write, such as NaN)."""
    text = record.model_dump_json()
    assert text.count(old) == 1, (old, text)
    return topic_of(record), text.replace(old, new).encode()


def altered(record: LedgerRecord, **changes: Any) -> tuple[str, bytes]:
    """The record's JSON with fields replaced: what a faulty or hostile producer could send."""
    data = json.loads(record.model_dump_json())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for p in parents:
            node = node[p]
        node[last] = value
    return topic_of(record), json.dumps(data).encode()


RECORDS = simulated_decisions(seed=4, interactions=1500, employees=4, complete_share=0.5)
AWARD = next(r for r in RECORDS if isinstance(r, BonusAward))
GAP = next(r for r in RECORDS if isinstance(r, PerformanceGap))
LESSON = assigned("a-poison")
DONE = completion(LESSON, "done-poison")


def quarantine(store: LedgerStore) -> dict[str | None, dict[str, Any]]:
    """The quarantine by record id."""
    return {r["record_id"]: r for r in store.quarantined(values=True)}


def ledger_of(records: list[LedgerRecord], tmp_path: Path) -> dict[str, Any]:
    """The rows a ledger holds after writing just these records (SQLite, for reference)."""
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    migrate(engine)
    LedgerStore(engine).write(records)
    rows = snapshot(engine)
    engine.dispose()
    return without_quarantine(rows)


def without_quarantine(rows: dict[str, Any]) -> dict[str, Any]:
    return {table: r for table, r in rows.items() if table != Quarantined.__tablename__}


# ---- hostile test 1: a time that overflows in UTC ---------------------------------------------

COMPLETION_OVERFLOWS = [
    ("9999-12-31T23:00:00-05:00", '"event_id": "late"'),
    ("0001-01-01T01:00:00+05:00", '"event_id": "early"'),
]


def test_a_completion_whose_time_overflows_in_utc_is_quarantined_and_the_writer_goes_on(
        store: LedgerStore) -> None:
    good = [encoded(r) for r in RECORDS[:40]]
    hostile: list[tuple[str, bytes]] = []
    for at, event_id in COMPLETION_OVERFLOWS:
        hostile.append((topics.LESSON_COMPLETIONS, (
            f'{{{event_id}, "assignment_id": "a-1", "employee_id": "emp-1", '
            f'"completed_at": "{at}"}}').encode()))
    # a decision record may carry such a time too (no contract bound on its event time)
    hostile.append(altered(AWARD, award_id="award-late", at="9999-12-31T23:00:00-05:00"))
    batch = messages(good[:20] + hostile + good[20:])
    written = BatchWriter(store, NAMES).write(batch)
    assert written.total() == 40
    assert store.ids(Award) == {r.award_id for r in RECORDS[:40] if isinstance(r, BonusAward)}
    kept = quarantine(store)
    assert set(kept) == {"late", "early", "award-late"}
    for event_id in ("late", "early"):
        assert kept[event_id]["contract_topic"] == topics.LESSON_COMPLETIONS
        # the contract may bound completion times itself (then the record is unparseable)
        assert kept[event_id]["kind"] in {OVERFLOW, UNPARSEABLE}
        assert "completed_at" in kept[event_id]["reason"]
    award = kept["award-late"]
    assert (award["kind"], award["error_type"]) == (OVERFLOW, "OverflowError")
    assert award["reason"] == ("at 9999-12-31T23:00:00-05:00 is out of range once converted "
                               "to UTC")
    # again, as after a restart before the offsets were committed: nothing new, nothing twice
    before = snapshot(store.engine)
    assert BatchWriter(store, NAMES).write(batch).total() == 40
    assert snapshot(store.engine) == before


@pytest.mark.parametrize("at", [at for at, _ in COMPLETION_OVERFLOWS])
def test_check_record_refuses_a_completion_time_that_overflows_in_utc(at: str) -> None:
    # as a completion the contract let through would be (model_construct skips validation)
    hostile = LessonCompletion.model_construct(event_id="e", assignment_id="a",
                                               employee_id="x",
                                               completed_at=datetime.fromisoformat(at))
    with pytest.raises(Unstorable) as refused:
        check_record(hostile)
    assert (refused.value.kind, refused.value.error_type) == (OVERFLOW, "OverflowError")
    assert refused.value.reason == f"completed_at {at} is out of range once converted to UTC"
    check_record(DONE)  # a plain completion is fine


# ---- siblings: every kind of value a database cannot store ------------------------------------

SIBLINGS: dict[str, tuple[Callable[[], tuple[str, bytes | None]], set[str]]] = {
    # hostile test 2: a NUL that PostgreSQL refuses (SQLite would take it: refused on both)
    "nul in team_id": (lambda: altered(AWARD, team_id="team\x00a"), {INVALID_TEXT}),
    "nul in evidence": (lambda: altered(AWARD, evidence__detail="a\x00b"), {INVALID_TEXT}),
    "lone surrogate": (lambda: altered(AWARD, team_id="\ud800"), {INVALID_TEXT, UNPARSEABLE}),
    "points beyond bigint": (lambda: altered(AWARD, points=10 ** 30), {OUT_OF_RANGE}),
    "points beyond integer": (lambda: altered(AWARD, points=3_000_000_000), {OUT_OF_RANGE}),
    "period longer than its column": (lambda: altered(AWARD, period="2026-11-02" * 3),
                                      {TOO_LONG}),
    "id longer than its column": (lambda: altered(AWARD, award_id="a" * 201), {TOO_LONG}),
    "NaN gap target": (lambda: replaced(GAP, f'"target":{json.dumps(GAP.target)},"evidence"',
                                         '"target":NaN,"evidence"'),
                       {INVALID_NUMBER}),
    "NaN in evidence": (lambda: replaced(AWARD, '"detail":', '"value":NaN,"detail":'),
                        {INVALID_NUMBER}),
    "nul in a completion": (lambda: altered(DONE, employee_id="emp\x00"),
                            {INVALID_TEXT, UNPARSEABLE}),
    "not JSON": (lambda: (topics.LESSON_COMPLETIONS, b"\xff\xfe not json"), {UNPARSEABLE}),
    "a tombstone": (lambda: (topics.BONUS_AWARDS, None), {UNPARSEABLE}),
    "JSON but not a record": (lambda: (topics.LESSON_ASSIGNMENTS, b"[1, 2]"), {UNPARSEABLE}),
    "an ending with a date out of range": (lambda: altered(
        LESSON.model_copy(update={"status": "expired"}), ended_at="0001-01-01T00:00:00+01:00"),
        {OVERFLOW}),
}


@pytest.mark.parametrize("case", list(SIBLINGS))
def test_one_poison_record_in_the_middle_is_quarantined_and_every_other_written_once(
        case: str, store: LedgerStore, tmp_path: Path) -> None:
    poison, kinds = SIBLINGS[case]
    topic, value = poison()
    good = [*RECORDS[:120], LESSON, DONE, *RECORDS[120:]]
    values: list[tuple[str, bytes | None]] = [encoded(r) for r in good]
    batch = messages([*values[:121], (topic, value), *values[121:]])
    before = QUARANTINED.labels(topic, next(iter(kinds)))._value.get()
    written = BatchWriter(store, NAMES).write(batch)
    assert written.total() == len(good)
    assert without_quarantine(snapshot(store.engine)) == ledger_of(good, tmp_path)
    (row,) = store.quarantined(values=True)
    poisoned = next(m for m in batch if m.value == value and m.topic == PREFIX + topic)
    assert (row["topic"], row["kafka_partition"], row["kafka_offset"], row["contract_topic"]) \
        == (PREFIX + topic, 0, poisoned.offset, topic)
    assert row["record_key"] == poisoned.key and row["value"] == value
    assert row["kind"] in kinds, row
    assert row["reason"] and "\n" not in row["reason"] and "\x00" not in row["reason"]
    assert row["size"] == len(value or b"")
    if len(kinds) == 1:
        assert QUARANTINED.labels(topic, row["kind"])._value.get() == before + 1


def test_a_redelivered_poison_record_is_kept_and_counted_once(
        store: LedgerStore, caplog: pytest.LogCaptureFixture) -> None:
    batch = messages([encoded(AWARD), altered(AWARD, award_id="x", team_id="t\x00")])
    counter = QUARANTINED.labels(topics.BONUS_AWARDS, INVALID_TEXT)
    before = counter._value.get()
    with caplog.at_level(logging.WARNING, logger="frontline.ledger"):
        BatchWriter(store, NAMES).write(batch)
        BatchWriter(store, NAMES).write(batch)  # a re-delivery
    assert store.count(Quarantined) == 1
    assert counter._value.get() == before + 1
    (line,) = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert line.startswith("ledger quarantined bonus-awards partition 0 offset 1 "
                           "(invalid_text): awards.team_id contains a NUL character")


# ---- hostile test 2: bisection, poison or outage ---------------------------------------------

def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let every record through to the database, as a sibling `check_record` does not know
    would be: then the database's refusal is what the writer sees."""
    monkeypatch.setattr(ledger_sink, "check_record", lambda record: None)


# what each database says to a value `check_record` would have refused: (poison, refused by
# SQLite, refused by PostgreSQL, kinds)
REFUSED = {
    "points beyond bigint": ({"points": 10 ** 30}, True, True, {OUT_OF_RANGE, OVERFLOW}),
    # hostile test 2: PostgreSQL refuses a NUL (psycopg's DataError); SQLite stores it
    "nul in team_id": ({"team_id": "team\x00a"}, False, True, {INVALID_TEXT}),
    "period longer than its column": ({"period": "x" * 11}, False, True, {TOO_LONG}),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bisection_isolates_the_record_the_database_refuses(
        case: str, store: LedgerStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unchecked(monkeypatch)
    writes: list[int] = []
    real_write = store.write

    def counted(records: Any) -> Any:
        writes.append(len(records))
        return real_write(records)

    monkeypatch.setattr(store, "write", counted)
    changes, on_sqlite, on_postgresql, kinds = REFUSED[case]
    refused = on_postgresql if store.engine.dialect.name == "postgresql" else on_sqlite
    good = list(RECORDS)
    values = [encoded(r) for r in good]
    values.insert(137, altered(AWARD, award_id="poison", **changes))
    written = BatchWriter(store, NAMES).write(messages(values))
    if not refused:  # the database takes it: one more award, nothing in the quarantine
        assert written.total() == len(good) + 1 and store.count(Quarantined) == 0
        assert "poison" in store.ids(Award)
        return
    assert written.total() == len(good)
    assert without_quarantine(snapshot(store.engine)) == ledger_of(good, tmp_path)
    (row,) = store.quarantined()
    assert row["record_id"] == "poison"
    assert row["kind"] in kinds, row
    # halves, down to the one record: about 2 log2(n) transactions, not n
    assert writes[0] == len(good) + 1 and len(writes) <= 2 * 9


def test_a_database_that_refuses_every_record_of_a_kind_is_retried_not_quarantined(
        store: LedgerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong schema (here: a constraint no award meets) is not poison: the known-good probe
    record fails too, so the batch is retried, and nothing goes to the quarantine."""
    unchecked(monkeypatch)
    refuse_awards(store.engine, "{row}points < -1000")
    batch = messages([encoded(r) for r in RECORDS[:50]])
    with pytest.raises(RetryLater) as retry:
        BatchWriter(store, NAMES).write(batch)
    assert not retry.value.unreachable
    assert "known-good bonus-awards record is refused too" in retry.value.reason
    assert store.count(Quarantined) == 0
    assert store.count(Award) == 0
    allow_awards(store.engine)
    assert BatchWriter(store, NAMES).write(batch).total() == 50  # fixed: it goes on
    assert store.count(Award) == sum(isinstance(r, BonusAward) for r in RECORDS[:50])
    assert store.count(Quarantined) == 0


def test_more_refused_records_than_the_limit_are_taken_for_a_database_fault(
        store: LedgerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe record passes, but more than `max_poison_per_batch` records of one batch fail
    alike: a database problem, not that many poison records."""
    unchecked(monkeypatch)
    refuse_awards(store.engine, "substr({row}award_id, 1, 4) <> 'big-'")  # not the probe
    awards = [altered(AWARD, award_id=f"big-{i}") for i in range(4)]
    batch = messages([encoded(r) for r in RECORDS[:30]] + awards)
    with pytest.raises(RetryLater) as retry:
        BatchWriter(store, NAMES, max_poison_per_batch=3).write(batch)
    assert "4 records of one batch refused (constraint" in retry.value.reason
    assert store.count(Quarantined) == 0
    # within the limit they are poison records, each kept
    written = BatchWriter(store, NAMES, max_poison_per_batch=4).write(batch)
    assert written.total() == 30
    assert {r["record_id"] for r in store.quarantined()} == {f"big-{i}" for i in range(4)}
    allow_awards(store.engine)


def refuse_awards(engine: Engine, condition: str) -> None:
    """A schema that refuses awards unless `condition` ({row} stands for the new row)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE awards ADD CONSTRAINT refuse CHECK "
                                 f"({condition.format(row='')})")
        else:
            conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON awards WHEN NOT "
                                 f"({condition.format(row='NEW.')}) BEGIN "
                                 f"SELECT RAISE(ABORT, 'refused'); END")


def allow_awards(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE awards DROP CONSTRAINT refuse"
                             if engine.dialect.name == "postgresql" else
                             "DROP TRIGGER refuse")


@pytest.mark.parametrize("where", ["unreachable", "no schema"])
def test_an_outage_is_retried_and_quarantines_nothing(where: str, empty_engine: Engine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    unchecked(monkeypatch)
    engine = empty_engine
    if where == "unreachable":
        engine = create_ledger_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none"
            if empty_engine.dialect.name == "postgresql" else
            f"sqlite:///{Path(str(empty_engine.url.database)).parent}/missing/dir/x.sqlite")
        if empty_engine.dialect.name == "sqlite":
            Path(str(engine.url.database)).parent.rmdir()  # created by create_ledger_engine
    batch = messages([encoded(AWARD), altered(AWARD, award_id="x", points=10 ** 30)])
    with pytest.raises(RetryLater) as retry:
        BatchWriter(LedgerStore(engine), NAMES).write(batch)
    assert retry.value.unreachable
    assert is_outage(retry.value.__cause__)  # type: ignore[arg-type]


def test_the_overdue_sweep_never_stops_the_writer(
        empty_engine: Engine, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = LedgerStore(empty_engine)  # no schema: an error the sweep waits out
    assert sweep(store, T0) == 0
    migrate(empty_engine)
    store.write([LESSON])

    def broken(now: Any) -> int:
        raise RuntimeError("a bug\nin two lines")

    monkeypatch.setattr(store, "sweep_overdue", broken)
    with caplog.at_level(logging.WARNING, logger="frontline.ledger"):
        assert sweep(store, T0) == 0
    assert "overdue sweep failed (a bug); trying again next round" in caplog.text
    monkeypatch.undo()
    assert sweep(store, LESSON.due_at.replace(year=LESSON.due_at.year + 1)) == 1


# ---- operators: the list, reconcile, the schema -----------------------------------------------

def url_of(store: LedgerStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_the_quarantine_is_listed_as_a_table_and_as_json(
        store: LedgerStore, capsys: pytest.CaptureFixture[str]) -> None:
    nul = altered(AWARD, award_id="x", team_id="t\x00")
    batch = messages([encoded(AWARD), nul, (topics.LESSON_COMPLETIONS, b"\xffnot json")])
    BatchWriter(store, NAMES).write(batch)
    capsys.readouterr()
    assert main(["ledger", "quarantine", "--database-url", url_of(store)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["quarantined_at", "topic", "partition", "offset", "error_type",
                              "kind", "size", "reason"]
    assert out[-1] == "(2 quarantined records)"
    rows = [line.split(None, 7) for line in out[1:-1]]
    assert {(r[1], r[2], r[3], r[5]) for r in rows} == {
        (PREFIX + topics.BONUS_AWARDS, "0", "1", INVALID_TEXT),
        (PREFIX + topics.LESSON_COMPLETIONS, "0", "0", UNPARSEABLE)}
    assert main(["ledger", "quarantine", "--format", "json", "--database-url",
                 url_of(store)]) == 0
    listed = {r["contract_topic"]: r for r in json.loads(capsys.readouterr().out)}
    award = listed[topics.BONUS_AWARDS]
    assert base64.b64decode(award["value_base64"]) == nul[1]
    assert json.loads(award["value"])["team_id"] == "t\x00"
    assert (award["record_key"], award["record_id"], award["size"]) == ("key-1", "x",
                                                                        len(nul[1]))
    assert award["error_type"] == "Unstorable" and award["kafka_offset"] == 1
    junk = listed[topics.LESSON_COMPLETIONS]
    assert base64.b64decode(junk["value_base64"]) == b"\xffnot json"
    assert junk["record_id"] is None and junk["error_type"] == "ValidationError"
    assert junk["reason"].startswith("value is not valid UTF-8 JSON")


def test_reconcile_counts_a_quarantined_record_as_accounted_for(store: LedgerStore) -> None:
    good = [r for r in RECORDS[:80] if not isinstance(r, LessonCompletion)]
    values: list[tuple[str, bytes | None]] = [encoded(r) for r in good]
    values += [altered(AWARD, award_id="poison", points=10 ** 30),
               (topics.LESSON_EFFECTS, b"not json")]
    batch = messages(values)
    BatchWriter(store, NAMES).write(batch)
    # what topic_ids reads: each record's contract id, a record without one its position
    on_topics: dict[str, set[str]] = {}
    for m in batch:
        name = NAMES[m.topic]
        try:
            rid = topics.record_key(name, json.loads(m.value or b""))
        except ValueError:
            rid = f"@{m.partition}:{m.offset}"
        on_topics.setdefault(name, set()).add(rid)
    junk = f"@0:{batch[-1].offset}"
    kept = quarantined_ids(store)
    assert kept == {topics.BONUS_AWARDS: {"poison"}, topics.LESSON_EFFECTS: {junk}}
    report = reconcile(on_topics, ledger_ids(store), kept)
    assert report.clean, report
    assert report.quarantined[topics.BONUS_AWARDS] == ["poison"]
    assert report.quarantined[topics.LESSON_EFFECTS] == [junk]
    # without the quarantine the same records are missing: reconcile tells them apart
    assert reconcile(on_topics, ledger_ids(store)).missing_in_ledger[topics.BONUS_AWARDS] == \
        ["poison"]


def test_the_quarantine_migration_upgrades_and_downgrades(store: LedgerStore) -> None:
    BatchWriter(store, NAMES).write(messages([encoded(AWARD), (topics.BONUS_AWARDS, b"{}")]))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert current_revision(store.engine) == "0003"
    assert "quarantine" not in inspect(store.engine).get_table_names()
    assert store.ids(Award) == {AWARD.award_id}  # the decisions stay
    assert migrate(store.engine) == "0004"
    columns = {c["name"] for c in inspect(store.engine).get_columns("quarantine")}
    assert columns == {c.name for c in LedgerBase.metadata.tables["quarantine"].columns}
    with store.engine.connect() as conn:
        assert conn.execute(select(Quarantined.topic)).all() == []


def test_the_quarantine_command_says_what_is_wrong_in_one_line(
        empty_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    url = empty_engine.url.render_as_string(hide_password=False)
    assert main(["ledger", "quarantine", "--format", "xml", "--database-url", url]) == 2
    assert main(["ledger", "quarantine", "--database-url", url]) == 2  # no schema yet
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "--format" in lines[0]
    assert "no schema yet: run `frontline ledger migrate`" in lines[1]
    migrate(empty_engine)
    assert main(["ledger", "quarantine", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(0 quarantined records)"
    assert main(["ledger", "quarantine", "--format", "json", "--database-url", url]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_ledger_help_lists_the_quarantine_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["ledger", "--help"])
    assert done.value.code == 0
    assert "quarantine    records the writer could not store" in capsys.readouterr().out
