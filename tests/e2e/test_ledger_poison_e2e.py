"""The ledger writer end to end with poison records: a worker on the embedded broker, the writer
reading its topics into SQLite or a real PostgreSQL server, and records on those topics that
no database could store (times that overflow in UTC, a NUL in a text, points too big, not JSON).
Each goes to the quarantine, where it was read; every other record reaches the ledger; the
writer neither stops nor stalls, and a restart does not quarantine anything twice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.harness import InteractionMaker, Pipeline, Sent, wait_until
from e2e.test_ledger_e2e import interactions, ledger_url, running_sink  # noqa: F401 - fixture
from models.ledger import Award, Quarantined
from streams import metrics, topics
from streams.cli import main
from streams.ledger_schema import create_ledger_engine, migrate
from streams.ledger_sink import QUARANTINED, WRITE_FAILURES
from streams.ledger_store import LedgerStore


def completion(event_id: str, completed_at: str, employee_id: str = "emp-1") -> bytes:
    return json.dumps({"event_id": event_id, "assignment_id": "a-1",
                       "employee_id": employee_id, "completed_at": completed_at}).encode()


HOSTILE_COMPLETIONS = [
    # hostile test 1: valid JSON, a time that overflows once converted to UTC
    completion("late", "9999-12-31T23:00:00-05:00"),
    completion("early", "0001-01-01T01:00:00+05:00"),
    b"\x00\x01 not json at all",
    completion("nul", "2026-11-02T10:00:00+00:00", employee_id="emp\x00"),
]


def hostile_awards(award: dict[str, Any]) -> list[bytes]:
    """A real award from the topic, altered as a faulty producer could: hostile test 2's NUL
    in team_id (PostgreSQL refuses it), and points no integer column holds."""
    return [json.dumps({**award, "award_id": "poison-nul", "team_id": "team\x00a"}).encode(),
            json.dumps({**award, "award_id": "poison-points", "points": 10 ** 30}).encode()]


def positions(pipeline: Pipeline, sent: list[Sent]) -> set[tuple[str, int, int]]:
    return {(pipeline.topic(s.source), s.partition, s.offset) for s in sent}


@pytest.mark.e2e
def test_poison_records_are_quarantined_and_the_writer_goes_on(
        pipeline: Pipeline, ledger_url: str,  # noqa: F811 - the fixture imported above
        capsys: pytest.CaptureFixture[str]) -> None:
    engine = create_ledger_engine(ledger_url)
    migrate(engine)
    store = LedgerStore(engine)
    failures_before = WRITE_FAILURES._value.get()
    counted_before = sum(s.value for s in _quarantined_samples())

    def quarantined() -> set[tuple[str, int, int]]:
        return {(r["topic"], r["kafka_partition"], r["kafka_offset"])
                for r in store.quarantined()}

    def awards_accounted_for() -> bool:
        """Every award on the topic is in the ledger or in the quarantine."""
        on_topic = {o.id for o in pipeline.reader.of(topics.BONUS_AWARDS)}
        kept = {r["record_id"] for r in store.quarantined()
                if r["contract_topic"] == topics.BONUS_AWARDS}
        return bool(on_topic) and on_topic <= store.ids(Award) | kept

    first = interactions(seed=41, count=150)
    pipeline.produce(first)
    with running_sink(pipeline, ledger_url):
        pipeline.wait_handled(len(first))
        wait_until(lambda: store.count(Award) > 0 and
                   len(pipeline.reader.of(topics.BONUS_AWARDS)) > 0, "awards in the ledger")
        award = pipeline.reader.of(topics.BONUS_AWARDS)[0].json
        poison = pipeline.produce([(b"emp-1", v) for v in HOSTILE_COMPLETIONS],
                                  source=topics.LESSON_COMPLETIONS)
        poison += pipeline.produce([(award["employee_id"].encode(), v)
                                    for v in hostile_awards(award)],
                                   source=topics.BONUS_AWARDS)
        # a valid interaction with a NUL in team_id: what the worker makes of it (if it takes
        # it) must not stall the ledger either
        nul_team = InteractionMaker("emp-nul", team_id="team\x00nul")
        pipeline.produce([(b"emp-nul", nul_team(csat=5)) for _ in range(5)])
        more = interactions(seed=42, count=150)
        pipeline.produce(more)
        pipeline.wait_handled(len(first) + 5 + len(more))
        wait_until(lambda: positions(pipeline, poison) <= quarantined(),
                   "every poison record in the quarantine",
                   explain=lambda: f"quarantined: {sorted(quarantined())}")
        wait_until(awards_accounted_for, "every award in the ledger or the quarantine")
        wait_until(lambda: metrics.HEALTH.ready() == (True, "ok"), "the writer to be ready")
    # a poison record is not an outage: no batch was retried
    assert WRITE_FAILURES._value.get() == failures_before
    rows = {(r["topic"], r["kafka_partition"], r["kafka_offset"]): r
            for r in store.quarantined(values=True)}
    for s in poison:
        row = rows[(pipeline.topic(s.source), s.partition, s.offset)]
        assert row["value"] == s.value and row["record_key"] == s.key
        assert row["reason"] and "\n" not in row["reason"]
    kinds = {r["record_id"]: r["kind"] for r in rows.values()}
    assert kinds["poison-nul"] == "invalid_text"
    assert kinds["poison-points"] == "out_of_range"
    assert kinds["late"] in ("overflow", "unparseable")
    # only poison is quarantined: any other record there is one of the NUL team's decisions
    for r in rows.values():
        if r["contract_topic"] != topics.LESSON_COMPLETIONS and \
                r["record_id"] not in ("poison-nul", "poison-points"):
            assert json.loads(r["value"])["team_id"] == "team\x00nul", r
    assert sum(s.value for s in _quarantined_samples()) == counted_before + len(rows)

    # a restart reads on from the committed offsets: nothing quarantined twice, nothing stuck
    kept = store.count(Quarantined)
    later = interactions(seed=43, count=60)
    pipeline.produce(later)
    with running_sink(pipeline, ledger_url):
        pipeline.wait_handled(len(first) + 5 + len(more) + len(later))
        wait_until(awards_accounted_for, "the awards after the restart in the ledger")
    assert store.count(Quarantined) == kept

    # the operator's view: the list, and reconcile counting quarantined awards as accounted for
    where = ["--database-url", ledger_url]
    capsys.readouterr()
    assert main(["ledger", "quarantine", "--format", "json", *where]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(r["topic"], r["kafka_partition"], r["kafka_offset"]) for r in listed} == set(rows)
    assert main(["ledger", "quarantine", *where]) == 0
    assert f"({len(rows)} quarantined records)" in capsys.readouterr().out
    assert main(["ledger", "reconcile", "--broker", pipeline.broker.url, "--topic-prefix",
                 pipeline.prefix, "--idle", "1", *where]) == 0
    out = capsys.readouterr().out
    assert "  quarantined: poison-nul" in out and "  quarantined: poison-points" in out
    assert f"reconciled: nothing missing on either side ({len(rows)} records quarantined" in out
    engine.dispose()


def _quarantined_samples() -> list[Any]:
    return [s for family in QUARANTINED.collect() for s in family.samples
            if s.name == "frontline_ledger_quarantined_total"]
