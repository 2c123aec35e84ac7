"""The lesson lifecycle in the ledger, on SQLite and a real PostgreSQL server: the worker's
assigned and ending records land once and replays change nothing, an ending is final, an
ending that comes before its assignment waits for it, completions are logged with an outcome
that does not depend on the order of the topics, and lesson-effect measurements land once."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from ledger.decisions import assigned, completion, effect, ended
from ledger.snapshot import snapshot
from sqlalchemy import select

from models.events import ENDED_STATUSES, LessonAssignment, LessonCompletion
from models.ledger import Assignment, Completion, Effect, PendingEnding
from streams.ledger_store import APPLIED, PENDING, REJECTED, LedgerRecord, LedgerStore


def _row(store: LedgerStore, assignment_id: str) -> dict[str, Any]:
    rows = [r for r in store.rows("assignments") if r["assignment_id"] == assignment_id]
    assert len(rows) == 1
    return rows[0]


def _completion(store: LedgerStore, event_id: str) -> tuple[str, str]:
    with store.engine.connect() as conn:
        row = conn.execute(select(Completion.outcome, Completion.reason)
                           .where(Completion.event_id == event_id)).one()
    return row.outcome, row.reason


@pytest.mark.parametrize("status", ENDED_STATUSES)
def test_an_assignment_and_its_ending_land_once_and_replays_change_nothing(
        store: LedgerStore, status: str) -> None:
    a = assigned("a-1")
    end = ended(a, status, hours=5, completion_event_id="done-1")
    first = store.write([a])
    assert (first.inserted, first.ended) == ({"assignments": 1}, 0)
    assert _row(store, "a-1")["status"] == "assigned"
    assert store.write([end]).ended == 1
    row = _row(store, "a-1")
    ended_at = (a.at + timedelta(hours=5)).isoformat()
    assert (row["status"], row["ended_at"]) == (status, ended_at)
    if status == "completed":
        assert (row["completed_at"], row["completion_event_id"]) == (ended_at, "done-1")
    else:
        assert (row["completed_at"], row["completion_event_id"]) == (None, None)
    before = snapshot(store.engine)
    again = store.write([a, end, a, end])  # replayed and re-delivered
    assert (again.inserted, again.ended) == ({"assignments": 0}, 0)
    assert snapshot(store.engine) == before


def test_both_records_in_one_batch_in_either_order(store: LedgerStore) -> None:
    a, b = assigned("a-1"), assigned("a-2", gap_id="gap-b")
    result = store.write([ended(b, "superseded"), b, a, ended(a, "cancelled")])
    assert result.ended == 2
    assert [(r["assignment_id"], r["status"]) for r in store.rows("assignments")] == \
        [("a-1", "cancelled"), ("a-2", "superseded")]
    assert store.count(PendingEnding) == 0


def test_an_ending_before_its_assignment_waits_for_it(store: LedgerStore) -> None:
    a = assigned("a-1")
    end = ended(a, "expired", hours=24 * 10)
    assert store.write([end]).ended == 0  # nothing to end yet, and nothing breaks
    assert store.count(Assignment) == 0 and store.count(PendingEnding) == 1
    assert store.write([end]).ended == 0  # a replay keeps one
    assert store.count(PendingEnding) == 1
    assert store.write([a]).ended == 1
    assert _row(store, "a-1")["status"] == "expired"
    assert store.count(PendingEnding) == 0
    in_order = snapshot(store.engine)
    store.write([a, end])
    assert snapshot(store.engine) == in_order


def test_an_ending_is_final_and_the_overdue_sweep_touches_only_open_ones(
        store: LedgerStore) -> None:
    a, b = assigned("a-1"), assigned("a-2", gap_id="gap-b")
    store.write([a, b, ended(a, "expired", hours=24 * 10)])
    late = a.due_at + timedelta(days=1)
    assert store.sweep_overdue(late) == 1  # b only: a has ended
    assert (_row(store, "a-1")["status"], _row(store, "a-2")["status"]) == \
        ("expired", "overdue")
    assert store.sweep_overdue(late + timedelta(days=30)) == 0
    # an overdue assignment still ends as the worker says; an ended one stays as it ended
    assert store.write([ended(b, "completed", hours=24 * 8, completion_event_id="late"),
                        ended(a, "completed", hours=24 * 11, completion_event_id="x")]
                       ).ended == 1
    assert (_row(store, "a-1")["status"], _row(store, "a-1")["completion_event_id"]) == \
        ("expired", None)
    row = _row(store, "a-2")
    assert (row["status"], row["completion_event_id"]) == ("completed", "late")


def test_a_completion_waits_for_the_workers_decision(store: LedgerStore) -> None:
    a = assigned("a-1")
    done = completion(a, "done-1")
    assert store.write([done]).completions == {PENDING: 1}
    assert _completion(store, "done-1") == (PENDING, "assignment a-1 is not in the ledger yet")
    # the assignment alone decides nothing: the ledger does not apply completions itself
    assert store.write([a]).completions == {}
    assert _completion(store, "done-1") == (PENDING, "assignment a-1 has not ended yet")
    assert _row(store, "a-1")["status"] == "assigned"
    assert store.write([ended(a, "completed", completion_event_id="done-1")]).completions == \
        {APPLIED: 1}
    assert _completion(store, "done-1") == (APPLIED, "")
    assert store.write([done, a]).completions == {}  # seen before: logged once


# (the worker's ending of a-1, or None, and the completion) -> the outcome and reason logged
CASES = {
    "applied": ("completed:done-1", "done-1", None, (APPLIED, "")),
    "completed by another": ("completed:done-0", "done-1", None,
                             (REJECTED, "assignment a-1 was already completed by done-0")),
    "expired": ("expired", "done-1", None,
                (REJECTED, "assignment a-1 ended as expired at 2026-11-12T09:00:00+00:00")),
    "cancelled": ("cancelled", "done-1", None,
                  (REJECTED, "assignment a-1 ended as cancelled at 2026-11-12T09:00:00+00:00")),
    "another employee's": (None, "done-1", "emp-2",
                           (REJECTED, "assignment a-1 belongs to employee emp-1, not emp-2")),
    "not ended yet": (None, "done-1", None, (PENDING, "assignment a-1 has not ended yet")),
}


@pytest.mark.parametrize("case", CASES)
def test_a_completions_outcome_does_not_depend_on_the_order_of_the_topics(
        store: LedgerStore, case: str) -> None:
    ending, event_id, employee_id, expected = CASES[case]
    a = assigned("a-1")
    records: list[LedgerRecord] = [a, completion(a, event_id, employee_id=employee_id)]
    if ending is not None:
        status, _, by = ending.partition(":")
        records.append(ended(a, status, hours=24 * 10, completion_event_id=by or None))
    seen = set()
    for order in itertools.permutations(records):
        for batches in ([list(order)], [[r] for r in order]):  # one batch, or one per record
            with store.engine.begin() as conn:  # start over
                for table in (Completion, Assignment, PendingEnding):
                    conn.execute(table.__table__.delete())
            for batch in batches:
                store.write(batch)
            assert _completion(store, event_id) == expected, (case, order)
            seen.add(repr(snapshot(store.engine)))
    assert len(seen) == 1  # every order: the very same ledger


def test_completions_of_other_employees_and_second_completions_are_rejected(
        store: LedgerStore) -> None:
    a = assigned("a-1")
    first, again = completion(a, "done-1"), completion(a, "done-2", hours=3)
    stranger = completion(a, "done-x", employee_id="emp-intruder")
    result = store.write([a, first, again, stranger,
                          ended(a, "completed", completion_event_id="done-1")])
    assert result.completions == {APPLIED: 1, REJECTED: 2}
    assert _completion(store, "done-2") == \
        (REJECTED, "assignment a-1 was already completed by done-1")
    assert _completion(store, "done-x")[0] == REJECTED
    assert _row(store, "a-1")["completion_event_id"] == "done-1"


def test_lesson_effects_land_once(store: LedgerStore) -> None:
    lesson = effect("e-1", "lesson", (2, 10), (7, 10), assignment_id="a-1")
    comparison = effect("e-2", "comparison", (4, 10), (5, 10))
    assert store.write([lesson, comparison, lesson]).inserted == {"lesson_effects": 2}
    assert store.write([comparison, lesson]).inserted == {"lesson_effects": 0}
    assert store.ids(Effect) == {"e-1", "e-2"}
    rows = {r["effect_id"]: r for r in store.rows("lesson_effects")}
    assert {k: rows["e-1"][k] for k in ("gap_id", "assignment_id", "lesson_id", "group_name",
                                        "window_size", "before_passes", "before_n",
                                        "after_passes", "after_n", "team_id")} == {
        "gap_id": "gap-e-1", "assignment_id": "a-1", "lesson_id": "lesson-empathy",
        "group_name": "lesson", "window_size": 10, "before_passes": 2, "before_n": 10,
        "after_passes": 7, "after_n": 10, "team_id": "team-a"}
    assert rows["e-2"]["assignment_id"] is None and rows["e-2"]["group_name"] == "comparison"


def test_assignment_records_of_the_contract_round_trip_the_topic_parser() -> None:
    from streams.ledger_store import parse_records

    a = assigned("a-1")
    items = [("lesson-assignments", a.model_dump_json().encode()),
             ("lesson-assignments", ended(a, "superseded").model_dump_json().encode()),
             ("lesson-effects", effect("e-1", "lesson", (1, 5), (4, 5)).model_dump_json()
              .encode()),
             ("lesson-completions", completion(a, "done-1").model_dump_json().encode())]
    parsed = parse_records(items)
    assert [type(r).__name__ for r in parsed] == ["LessonAssignment", "LessonAssignment",
                                                  "LessonEffect", "LessonCompletion"]
    assert isinstance(parsed[1], LessonAssignment) and parsed[1].status == "superseded"
    assert isinstance(parsed[3], LessonCompletion)
