"""A standard the playbook no longer has (removed or renamed) is retired on the employee's next
event: its open gap closed and its open lessons cancelled, reason standard_retired, once; its
state and lesson-effect measurements dropped. Nothing keyed by a name that left the playbook
makes a record fail."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.decision_engine import DecisionEngine
from agents.employee_state import AssignmentState, EmployeeState
from agents.record_processor import RecordProcessor, partition_for
from models.events import (
    ExecutionScore,
    Interaction,
    LessonAssignment,
    PerformanceGap,
    record_id,
)


def of(records, cls):
    return [r for r in records if isinstance(r, cls)]


def feed(engine, state, events):
    out = []
    for ev in events:
        decision = (engine.on_interaction(state, ev) if isinstance(ev, Interaction)
                    else engine.on_completion(state, ev))
        assert decision.outcome == "processed", decision
        out += decision.records
    return out


@pytest.fixture
def before(custom_playbook):
    return DecisionEngine(custom_playbook({"greeting": 0.8, "empathy": 0.8}, version="v1"))


@pytest.fixture
def open_gap(before, interactions):
    """emp-1 with an open empathy gap, its lesson assigned and its effect measured."""
    state = EmployeeState("emp-1")
    records = feed(before, state, interactions.pattern("FFFFFF", "empathy"))
    (gap,) = of(records, PerformanceGap)
    (lesson,) = of(records, LessonAssignment)
    assert state.effects and state.standards["empathy"].gap_id == gap.gap_id
    return state, gap, lesson


def test_an_open_gap_and_lesson_of_a_removed_standard_end_once(custom_playbook, open_gap,
                                                               interactions):
    state, gap, lesson = open_gap
    after = DecisionEngine(custom_playbook({"greeting": 0.8}, version="v2"))
    ev = interactions()
    decision = after.on_interaction(state, ev)
    assert decision.outcome == "processed"
    score, closed, cancelled = decision.records
    assert isinstance(score, ExecutionScore)
    assert isinstance(closed, PerformanceGap) and isinstance(cancelled, LessonAssignment)
    assert (closed.gap_id, closed.standard, closed.status, closed.reason, closed.target) == \
        (gap.gap_id, "empathy", "closed", "standard_retired", 0.8)
    assert record_id(closed) == f"{gap.gap_id}:closed"
    assert closed.playbook_version == "v2" and closed.at == ev.ended_at
    assert closed.evidence.statistic == "standard_retired"
    assert closed.evidence.interaction_ids == [ev.interaction_id]
    assert "standard empathy is not in playbook v2" in closed.evidence.detail
    assert (cancelled.assignment_id, cancelled.status, cancelled.reason, cancelled.ended_at) == \
        (lesson.assignment_id, "cancelled", "standard_retired", ev.ended_at)
    assert record_id(cancelled) == f"{lesson.assignment_id}:cancelled"
    assert "empathy" not in state.standards and not state.effects
    assert state.assignments[lesson.assignment_id].status == "cancelled"  # kept: see below
    # published once: the next events are plain
    for _ in range(3):
        decision = after.on_interaction(state, interactions(fail=("empathy",)))
        assert [type(r) for r in decision.records] == [ExecutionScore]
    assert "empathy" not in state.standards


def test_retiring_is_deterministic(custom_playbook, open_gap, interactions):
    state, _, _ = open_gap
    after = DecisionEngine(custom_playbook({"greeting": 0.8}, version="v2"))
    ev = interactions()
    copy = EmployeeState.from_bytes(state.to_bytes())
    first = after.on_interaction(state, ev).records
    again = after.on_interaction(copy, ev).records
    assert [r.model_dump_json() for r in first] == [r.model_dump_json() for r in again]
    assert copy == state


def test_a_completion_of_a_retired_lesson_first_retires_then_is_refused(
        custom_playbook, open_gap, completion):
    state, gap, lesson = open_gap
    after = DecisionEngine(custom_playbook({"greeting": 0.8}, version="v2"))
    done = completion(lesson.assignment_id, lesson.at + timedelta(hours=1),
                      lesson_id=lesson.lesson_id)
    decision = after.on_completion(state, done)
    assert (decision.outcome, decision.code) == ("rejected", "rejected")
    assert f"assignment {lesson.assignment_id} already ended as cancelled" in decision.reason
    assert [(type(r).__name__, r.status, r.reason) for r in decision.records] == [
        ("PerformanceGap", "closed", "standard_retired"),
        ("LessonAssignment", "cancelled", "standard_retired")]
    assert decision.records[0].gap_id == gap.gap_id
    assert decision.records[1].evidence.interaction_ids == []
    assert decision.records[1].ended_at == done.completed_at
    # asked again: refused the same way, nothing more to publish
    decision = after.on_completion(state, done)
    assert (decision.outcome, decision.records) == ("rejected", [])
    assert "already ended as cancelled" in decision.reason


def test_a_completion_after_the_retirement_is_refused(custom_playbook, open_gap, interactions,
                                                      completion):
    state, _, lesson = open_gap
    after = DecisionEngine(custom_playbook({"greeting": 0.8}, version="v2"))
    after.on_interaction(state, interactions())
    decision = after.on_completion(state, completion(lesson.assignment_id,
                                                     interactions.clock + timedelta(minutes=5)))
    assert (decision.outcome, decision.records) == ("rejected", [])
    assert "already ended as cancelled" in decision.reason


def test_a_renamed_standard_retires_the_old_name_and_starts_the_new_one(
        custom_playbook, open_gap, interactions):
    state, gap, _ = open_gap
    renamed = {"greeting": 0.8, "empathy_v2": {"title": "empathy", "target": 0.8,
                                               "check": {"field": "qa.empathy",
                                                         "op": "is_true"}}}
    after = DecisionEngine(custom_playbook(renamed, version="v2"))
    records = feed(after, state, interactions.pattern("FFFFFFFF", "empathy"))
    retired = [r for r in records if getattr(r, "reason", None) == "standard_retired"]
    assert [(type(r).__name__, r.standard) for r in retired] == [
        ("PerformanceGap", "empathy"), ("LessonAssignment", "empathy")]
    opened = [g for g in of(records, PerformanceGap) if g.status == "opened"]
    assert [g.standard for g in opened] == ["empathy_v2"] and opened[0].gap_id != gap.gap_id
    assert set(state.standards) == {"greeting", "empathy_v2"}
    (new_lesson,) = [a for a in of(records, LessonAssignment) if a.status == "assigned"]
    assert (new_lesson.standard, new_lesson.lesson_id) == ("empathy_v2", "lesson-empathy_v2")


def test_a_retired_standard_without_a_gap_is_dropped_quietly(custom_playbook, interactions):
    state = EmployeeState("emp-1")
    feed(DecisionEngine(custom_playbook({"greeting": 0.8, "empathy": 0.8})), state,
         [interactions() for _ in range(3)])
    decision = DecisionEngine(custom_playbook({"greeting": 0.8})).on_interaction(
        state, interactions())
    assert [type(r) for r in decision.records] == [ExecutionScore]
    assert list(state.standards) == ["greeting"]


def test_a_lesson_that_left_the_playbook_is_still_completed(custom_playbook, open_gap,
                                                            completion, interactions):
    """The standard stays and names another lesson; the open one ends normally."""
    state, _, lesson = open_gap
    other = custom_playbook({"greeting": 0.8, "empathy": {
        "title": "empathy", "target": 0.8, "lesson": "lesson-empathy-2",
        "check": {"field": "qa.empathy", "op": "is_true"}}}, version="v2")
    assert lesson.lesson_id not in other.lessons
    after = DecisionEngine(other)
    feed(after, state, [interactions(fail=("empathy",))])
    decision = after.on_completion(state, completion(lesson.assignment_id,
                                                     interactions.clock + timedelta(minutes=1)))
    assert decision.outcome == "processed"
    (done,) = decision.records
    assert (done.status, done.lesson_id, done.lesson_title) == \
        ("completed", lesson.lesson_id, lesson.lesson_id)
    assert state.standards["empathy"].gap_lesson_completed


def test_an_open_lesson_without_its_standard_state_is_cancelled_too(custom_playbook,
                                                                    interactions, completion):
    state = EmployeeState("emp-1", team_id="team-a")
    state.assignments["a1"] = AssignmentState("gone", "lesson-gone", "g1",
                                              interactions.clock.timestamp())
    engine = DecisionEngine(custom_playbook({"greeting": 0.8}))
    decision = engine.on_completion(state, completion("a1", interactions.clock
                                                      + timedelta(hours=1)))
    assert decision.outcome == "rejected"
    assert [(r.assignment_id, r.status, r.reason) for r in decision.records] == [
        ("a1", "cancelled", "standard_retired")]


def test_replays_after_a_retirement_are_still_duplicates(custom_playbook, before,
                                                         interactions):
    state = EmployeeState("emp-1")
    events = interactions.pattern("FFFFFF", "empathy")
    feed(before, state, events)
    after = DecisionEngine(custom_playbook({"greeting": 0.8}))
    after.on_interaction(state, interactions())
    for ev in events:
        assert after.on_interaction(state, ev).outcome == "duplicate"


def test_the_processor_publishes_a_retirement_that_comes_with_a_refused_completion(
        custom_playbook, open_gap, completion):
    """The retirement records decided on a refused completion are published and the changed
    state saved, next to the completion's dead letter."""
    state, gap, lesson = open_gap
    after = DecisionEngine(custom_playbook({"greeting": 0.8}, version="v2"))
    saved: dict[str, EmployeeState] = {"emp-1": state}

    class Store:
        def get(self, key):
            return saved.get(key)

        def put(self, key, value, partition):
            saved[key] = value

    processor = RecordProcessor(after, Store(), lambda _: 4)
    done = completion(lesson.assignment_id, lesson.at + timedelta(hours=1),
                      lesson_id=lesson.lesson_id)
    result = processor.process("lesson-completions", "lesson-completions",
                               partition_for(b"emp-1", 4), 3, b"emp-1",
                               done.model_dump_json().encode())
    assert result.outcome == "dead_lettered" and result.error_type == "rejected"
    assert [o.topic for o in result.outgoing] == [
        "performance-gaps", "lesson-assignments", "dead-letters"]
    assert result.state is saved["emp-1"] and "empathy" not in result.state.standards
    assert [r.status for r in result.records] == ["closed", "cancelled"]
    assert result.records[0].gap_id == gap.gap_id
