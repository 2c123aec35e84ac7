"""The ledger on SQLite and on a real PostgreSQL server: exactly-once writes whatever the
delivery order, balances, and the migrations. (The lesson lifecycle: test_lesson_lifecycle.)"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from ledger.decisions import simulated_decisions
from ledger.snapshot import snapshot
from sqlalchemy import Engine, inspect, select

from models.events import (
    BonusAward,
    LessonAssignment,
    LessonCompletion,
    LessonEffect,
    PerformanceGap,
)
from models.ledger import Assignment, Award, Base, Completion, Effect, Gap, PendingEnding
from models.playbook import load_playbook
from streams.ledger_schema import (
    MIGRATIONS,
    LedgerSchemaError,
    check_schema,
    create_ledger_engine,
    current_revision,
    head_revision,
    migrate,
)
from streams.ledger_store import APPLIED, LedgerRecord, LedgerStore


def decisions() -> list[LedgerRecord]:
    # half the lessons completed, so that others expire or are cancelled by their gap closing
    out = simulated_decisions(seed=3, interactions=3000, employees=6, complete_share=0.5)
    kinds = {type(r) for r in out}
    assert kinds == {BonusAward, PerformanceGap, LessonAssignment, LessonEffect,
                     LessonCompletion}
    statuses = {r.status for r in out if isinstance(r, LessonAssignment)}
    assert statuses >= {"assigned", "completed", "expired", "cancelled"}
    return out


RECORDS = decisions()


def test_every_decision_lands_once(store: LedgerStore) -> None:
    store.write(RECORDS)
    awards = [r for r in RECORDS if isinstance(r, BonusAward)]
    assert store.ids(Award) == {a.award_id for a in awards}
    assert store.count(Gap) == sum(isinstance(r, PerformanceGap) for r in RECORDS)
    lessons = [r for r in RECORDS if isinstance(r, LessonAssignment)]
    assert store.ids(Assignment) == {r.assignment_id for r in lessons if r.status == "assigned"}
    assert store.ids(Effect) == {r.effect_id for r in RECORDS if isinstance(r, LessonEffect)}
    # each assignment ends as its ending record says (the last record of an id), once
    expected = {r.assignment_id: r.status for r in lessons}
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(Assignment.assignment_id, Assignment.status)).all())
        outcomes = conn.execute(select(Completion.outcome)).scalars().all()
    assert statuses == expected
    assert store.count(PendingEnding) == 0
    # every completion the worker accepted is applied, none pending or rejected
    assert set(outcomes) == {APPLIED}
    assert len(outcomes) == sum(isinstance(r, LessonCompletion) for r in RECORDS)


def test_redelivery_and_any_order_give_the_same_ledger(empty_engine: Engine,
                                                       tmp_path: Path) -> None:
    migrate(empty_engine)
    store = LedgerStore(empty_engine)
    for start in range(0, len(RECORDS), 97):  # batches, as a sink writes them
        store.write(RECORDS[start:start + 97])
    reference = snapshot(empty_engine)
    assert reference["lesson_effects"] and reference["completions"]
    # the same records again (a replayed topic), then shuffled (any arrival order, even an
    # ending before its assignment)
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


def _insert(engine: Engine, table: str, row: dict[str, Any]) -> None:
    """A row as an older revision's code wrote it (plain SQL: the models are the newest)."""
    marker = "?" if engine.dialect.name == "sqlite" else "%s"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(row)}) VALUES "
                             f"({', '.join([marker] * len(row))})", tuple(row.values()))


def test_migrations_upgrade_an_empty_and_a_previous_revision_database(
        empty_engine: Engine) -> None:
    with pytest.raises(LedgerSchemaError, match="no schema yet: run `frontline ledger migrate`"):
        check_schema(empty_engine)
    assert migrate(empty_engine, "0001") == "0001"
    with pytest.raises(LedgerSchemaError, match="revision 0001, this version needs 0004"):
        check_schema(empty_engine)
    assert migrate(empty_engine, "0002") == "0002"
    with pytest.raises(LedgerSchemaError, match="revision 0002, this version needs 0004: run "
                       "`frontline ledger migrate`"):
        check_schema(empty_engine)
    # a database of the previous revision, with data in it, keeps its rows on upgrade
    a, done = next((r, c) for r in RECORDS if isinstance(r, LessonAssignment)
                   for c in RECORDS if isinstance(c, LessonCompletion)
                   and c.assignment_id == r.assignment_id)
    b = next(r for r in RECORDS if isinstance(r, LessonAssignment) and r.status == "assigned"
             and r.assignment_id != a.assignment_id)
    for x, status in ((a, "completed"), (b, "assigned")):
        _insert(empty_engine, "assignments", {
            "assignment_id": x.assignment_id, "employee_id": x.employee_id,
            "team_id": x.team_id, "standard": x.standard, "lesson_id": x.lesson_id,
            "gap_id": x.gap_id, "assigned_at": x.at, "due_at": x.due_at,
            "playbook_version": x.playbook_version, "evidence": x.evidence.model_dump_json(),
            "status": status, "pass_rate_before": 0.4,
            "completed_at": done.completed_at if status == "completed" else None,
            "completion_event_id": done.event_id if status == "completed" else None})
    _insert(empty_engine, "completions", {
        "event_id": done.event_id, "assignment_id": a.assignment_id,
        "employee_id": a.employee_id, "completed_at": done.completed_at, "outcome": "applied",
        "reason": ""})
    assert migrate(empty_engine) == head_revision() == current_revision(empty_engine) == "0004"
    check_schema(empty_engine)
    columns = {c["name"] for c in inspect(empty_engine).get_columns("assignments")}
    assert "ended_at" in columns and not columns & {"pass_rate_before", "pass_rate_after"}
    store = LedgerStore(empty_engine)
    rows = {r["assignment_id"]: r for r in store.rows("assignments")}
    completed, open_ = rows[a.assignment_id], rows[b.assignment_id]
    assert (completed["status"], completed["ended_at"], completed["completion_event_id"]) == \
        ("completed", completed["completed_at"], done.event_id)
    assert completed["ended_at"] is not None
    assert (open_["status"], open_["ended_at"], open_["completed_at"]) == \
        ("assigned", None, None)
    assert [c["outcome"] for c in store.rows("completions")] == [APPLIED]
    # the upgraded ledger takes the new records: an ending, a lesson effect
    ending = next((r for r in RECORDS if isinstance(r, LessonAssignment)
                   and r.assignment_id == b.assignment_id and r.status != "assigned"), None)
    effect = next(r for r in RECORDS if isinstance(r, LessonEffect))
    result = store.write([effect] + ([ending] if ending else []))
    assert result.inserted == {"lesson_effects": 1}
    assert result.ended == (1 if ending else 0)
    assert store.ids(Effect) == {effect.effect_id}


def test_the_newest_revision_downgrades_and_upgrades_again(store: LedgerStore) -> None:
    store.write(RECORDS[:400])
    assignments = store.ids(Assignment)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert current_revision(store.engine) == "0002"
    tables = set(inspect(store.engine).get_table_names())
    assert "assignments" in tables and not tables & {"lesson_effects", "pending_endings",
                                                     "quarantine"}
    assert migrate(store.engine) == "0004"
    assert store.ids(Assignment) == assignments


def test_the_tables_in_models_are_the_newest_revisions(store: LedgerStore) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_an_unreachable_database_is_one_line() -> None:
    engine = create_ledger_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(LedgerSchemaError) as err:
        check_schema(engine)
    assert "cannot reach the ledger database" in str(err.value)
    assert "\n" not in str(err.value)
