"""The ledger on SQLite and on a real PostgreSQL server: exactly-once writes whatever the
delivery order, the lesson lifecycle, balances, and the migrations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger.decisions import simulated_decisions
from sqlalchemy import Engine, select

from models.events import (
    BonusAward,
    LessonAssignment,
    LessonCompletion,
    PerformanceGap,
)
from models.ledger import Assignment, Award, Completion, Gap
from models.playbook import load_playbook
from streams.ledger_schema import (
    LedgerSchemaError,
    check_schema,
    create_ledger_engine,
    current_revision,
    head_revision,
    migrate,
)
from streams.ledger_store import APPLIED, PENDING, REJECTED, LedgerRecord, LedgerStore


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(empty_engine: Engine) -> LedgerStore:
    migrate(empty_engine)
    return LedgerStore(empty_engine)


def decisions() -> list[LedgerRecord]:
    out = simulated_decisions(seed=3, interactions=1500)
    kinds = {type(r) for r in out}
    assert kinds == {BonusAward, PerformanceGap, LessonAssignment, LessonCompletion}
    return out


RECORDS = decisions()


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order, for comparing two ledgers."""
    tables = {"awards": (Award, Award.award_id), "gaps": (Gap, Gap.gap_id, Gap.status),
              "assignments": (Assignment, Assignment.assignment_id),
              "completions": (Completion, Completion.event_id)}
    out = {}
    with engine.connect() as conn:
        for name, (table, *order) in tables.items():
            rows = conn.execute(select(table.__table__).order_by(*order)).all()
            out[name] = [tuple(_plain(v) for v in row) for row in rows]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLite hands back naive UTC
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def test_every_decision_lands_once(store: LedgerStore) -> None:
    store.write(RECORDS)
    awards = [r for r in RECORDS if isinstance(r, BonusAward)]
    assert store.ids(Award) == {a.award_id for a in awards}
    assert store.count(Gap) == sum(isinstance(r, PerformanceGap) for r in RECORDS)
    assert store.ids(Assignment) == {r.assignment_id for r in RECORDS
                                     if isinstance(r, LessonAssignment)}
    # every completion the stream accepted is applied, none pending or rejected
    with store.engine.connect() as conn:
        outcomes = conn.execute(select(Completion.outcome)).scalars().all()
        statuses = set(conn.execute(select(Assignment.status)).scalars())
    assert set(outcomes) == {APPLIED}
    assert len(outcomes) == sum(isinstance(r, LessonCompletion) for r in RECORDS)
    assert statuses <= {"assigned", "completed"} and "completed" in statuses


def test_redelivery_and_any_order_give_the_same_ledger(empty_engine: Engine,
                                                       tmp_path: Path) -> None:
    migrate(empty_engine)
    store = LedgerStore(empty_engine)
    for start in range(0, len(RECORDS), 97):  # batches, as a sink writes them
        store.write(RECORDS[start:start + 97])
    reference = snapshot(empty_engine)
    # the same records again (a replayed topic), then shuffled (other partition interleaving)
    store.write(RECORDS)
    shuffled = list(RECORDS)
    random.Random(5).shuffle(shuffled)
    for start in range(0, len(shuffled), 50):
        store.write(shuffled[start:start + 50])
    assert snapshot(empty_engine) == reference
    # a fresh ledger written in shuffled order converges on the same rows
    other = create_ledger_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    migrate(other)
    other_store = LedgerStore(other)
    for start in range(0, len(shuffled), 50):
        other_store.write(shuffled[start:start + 50])
    assert snapshot(other) == snapshot(empty_engine)
    other.dispose()


def _one_assignment() -> tuple[LessonAssignment, LessonCompletion]:
    a = next(r for r in RECORDS if isinstance(r, LessonAssignment))
    c = next(r for r in RECORDS if isinstance(r, LessonCompletion)
             and r.assignment_id == a.assignment_id)
    return a, c


def _completion(a: LessonAssignment, event_id: str, employee_id: str | None = None,
                hours: float = 2) -> LessonCompletion:
    return LessonCompletion(event_id=event_id, assignment_id=a.assignment_id,
                            employee_id=employee_id or a.employee_id,
                            completed_at=a.at + timedelta(hours=hours))


def _completion_row(store: LedgerStore, event_id: str) -> tuple[str, str]:
    with store.engine.connect() as conn:
        row = conn.execute(select(Completion.outcome, Completion.reason)
                           .where(Completion.event_id == event_id)).one()
    return row.outcome, row.reason


def _assignment(store: LedgerStore, assignment_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(Assignment.__table__)
                            .where(Assignment.assignment_id == assignment_id)).one()


def test_completion_before_its_assignment_waits_then_applies(store: LedgerStore) -> None:
    a, c = _one_assignment()
    assert store.write([c]).completions == {PENDING: 1}
    assert _completion_row(store, c.event_id)[0] == PENDING
    assert store.write([a]).completions == {APPLIED: 1}
    row = _assignment(store, a.assignment_id)
    assert (row.status, row.completion_event_id) == ("completed", c.event_id)
    assert _completion_row(store, c.event_id) == (APPLIED, "")


def test_bad_completions_are_recorded_with_a_reason_and_never_applied_twice(
        store: LedgerStore) -> None:
    a, c = _one_assignment()
    store.write([a, c])
    again = _completion(a, "second-completion")
    stranger = _completion(a, "someone-else", employee_id="emp-intruder")
    result = store.write([again, stranger, c])  # c itself: already seen, ignored
    assert result.completions == {REJECTED: 2}
    outcome, reason = _completion_row(store, "second-completion")
    assert outcome == REJECTED and "already completed" in reason
    outcome, reason = _completion_row(store, "someone-else")
    assert outcome == REJECTED and "belongs to employee" in reason
    assert _assignment(store, a.assignment_id).completion_event_id == c.event_id


def test_overdue_sweep_and_late_completion(store: LedgerStore) -> None:
    a, _ = _one_assignment()
    store.write([a])
    assert store.sweep_overdue(a.due_at - timedelta(minutes=1)) == 0
    assert store.sweep_overdue(a.due_at + timedelta(minutes=1)) >= 1
    assert _assignment(store, a.assignment_id).status == "overdue"
    assert store.sweep_overdue(a.due_at + timedelta(days=30)) == 0  # already overdue
    store.write([_completion(a, "late", hours=24 * 30)])
    assert _assignment(store, a.assignment_id).status == "completed"


def test_lesson_effectiveness_is_kept_per_assignment(store: LedgerStore) -> None:
    store.write(RECORDS)
    closed = {r.gap_id: r for r in RECORDS
              if isinstance(r, PerformanceGap) and r.status == "closed"}
    with store.engine.connect() as conn:
        rows = conn.execute(select(Assignment.__table__)).all()
    assert all(r.pass_rate_before is not None and r.pass_rate_before < 1 for r in rows)
    measured = [r for r in rows if r.pass_rate_after is not None]
    assert measured, "some gaps closed after their lesson"
    for r in measured:
        gap = closed[r.gap_id]
        assert r.pass_rate_after == round(gap.evidence.passes / gap.evidence.sample, 4)
        assert r.pass_rate_after > r.pass_rate_before


def test_balances_match_the_awards_and_the_daily_cap(store: LedgerStore) -> None:
    store.write(RECORDS)
    awards = [r for r in RECORDS if isinstance(r, BonusAward)]
    employee = max({a.employee_id for a in awards},
                   key=lambda e: sum(a.points for a in awards if a.employee_id == e))
    balance = store.balance(employee_id=employee)
    mine = [a for a in awards if a.employee_id == employee]
    expected: dict[str, int] = {}
    for a in mine:
        expected[a.period] = expected.get(a.period, 0) + a.points
    assert balance["day"] == dict(sorted(expected.items()))
    assert max(balance["day"].values()) <= load_playbook().limits.daily_points_cap
    assert sum(balance["week"].values()) == sum(balance["month"].values()) == \
        sum(a.points for a in mine)
    team = mine[0].team_id
    assert sum(store.balance(team_id=team)["day"].values()) == \
        sum(a.points for a in awards if a.team_id == team)


def test_migrations_upgrade_an_empty_and_a_previous_revision_database(
        empty_engine: Engine) -> None:
    with pytest.raises(LedgerSchemaError, match="no schema yet: run `frontline ledger migrate`"):
        check_schema(empty_engine)
    assert migrate(empty_engine, "0001") == "0001"
    with pytest.raises(LedgerSchemaError, match="revision 0001, this version needs"):
        check_schema(empty_engine)
    # a database of the previous revision, with data in it, keeps its rows on upgrade
    a, _ = _one_assignment()
    with empty_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO assignments (assignment_id, employee_id, team_id, standard, "
            "lesson_id, gap_id, assigned_at, due_at, playbook_version, evidence, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'assigned')" if
            empty_engine.dialect.name == "sqlite" else
            "INSERT INTO assignments (assignment_id, employee_id, team_id, standard, "
            "lesson_id, gap_id, assigned_at, due_at, playbook_version, evidence, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'assigned')",
            (a.assignment_id, a.employee_id, a.team_id, a.standard, a.lesson_id, a.gap_id,
             a.at, a.due_at, a.playbook_version, a.evidence.model_dump_json()))
    assert migrate(empty_engine) == head_revision() == current_revision(empty_engine)
    check_schema(empty_engine)
    row = _assignment(LedgerStore(empty_engine), a.assignment_id)
    assert row.pass_rate_before == round(a.evidence.passes / a.evidence.sample, 4)
    assert row.status == "assigned" and row.completed_at is None


def test_an_unreachable_database_is_one_line() -> None:
    engine = create_ledger_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(LedgerSchemaError) as err:
        check_schema(engine)
    assert "cannot reach the ledger database" in str(err.value)
    assert "\n" not in str(err.value)
