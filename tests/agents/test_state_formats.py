"""States as every released version wrote them to the changelog (frozen in state_formats/ by
state_formats/freeze.py from that version's own engine) load with what they held, recognise
the events they applied, take new ones, and are written back in the current format."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.decision_engine import DecisionEngine
from agents.employee_state import FORMAT_VERSION, EmployeeState
from models.events import Interaction, LessonAssignment, LessonCompletion, PerformanceGap
from models.playbook import Playbook, load_playbook, parse_playbook

FORMATS = Path(__file__).parent / "state_formats"
# Each format that shipped, by the commit that first wrote it: the first changelog (through
# Faust's JSON codec: hex digests with event times, rolling windows, one excellence day), then a
# list of excellence days, the compact JSON of to_bytes (digests by day, windows as ids and
# outcomes), the sequential tests with the lesson lifecycle and effect measurements, their
# scales as a pair of numbers, then as a string; and format 2 (this version).
RELEASED = ["1f25ca8", "aa031e6", "d333928", "dc7d4b4", "92199d6", "2f089eb", "v2"]


def frozen(label: str) -> tuple[bytes, dict[str, Any]]:
    return ((FORMATS / f"{label}.state").read_bytes(),
            json.loads((FORMATS / f"{label}.json").read_text("utf-8")))


def events_of(manifest: dict[str, Any]) -> list[Interaction | LessonCompletion]:
    """The events the frozen state applied: the scenario's interactions, then its completions."""
    scenario = json.loads((FORMATS / "scenario.json").read_text("utf-8"))
    return ([Interaction.model_validate_json(json.dumps(r)) for r in scenario]
            + [LessonCompletion.model_validate_json(json.dumps(r))
               for r in manifest["completions"]])


def test_every_released_format_is_frozen():
    assert sorted(p.stem for p in FORMATS.glob("*.state")) == sorted(RELEASED)


@pytest.mark.parametrize("label", RELEASED)
def test_a_released_state_loads_with_what_it_held(label):
    data, manifest = frozen(label)
    was = manifest["state"]
    state = EmployeeState.from_bytes(data)
    assert (state.employee_id, state.team_id) == (was["employee_id"], was["team_id"])
    assert (state.newest, state.pruned_at) == (was["newest"], was["pruned_at"])
    assert len(state.seen) == was["seen"]
    assert state.scores == was["scores"]
    assert state.excellence_days == was["excellence_days"]
    assert state.points == was["points"]
    assert sorted(state.standards) == sorted(was["standards"])
    for name, old in was["standards"].items():
        st = state.standards[name]
        assert (st.gap_id, st.gap_opened_at, st.gap_lesson_completed, st.gap_assignments,
                st.last_assigned_at) == (old["gap_id"], old["gap_opened_at"],
                                         old["gap_lesson_completed"], old["gap_assignments"],
                                         old["last_assigned_at"]), name
        assert st.gap_deferred == old.get("gap_deferred", False)
        if "s" in old:  # the sequential tests carry on
            assert (st.s, st.c, st.ids, st.flags, st.run_n, st.run_passes) == \
                (old["s"], old["c"], old["ids"], old["flags"], old["run_n"], old["run_passes"])
            scales = old.get("scales")
            if isinstance(scales, list):  # written as a pair of numbers
                scales = f"{scales[0]:.6f}/{scales[1]:.6f}"
            assert st.scales == scales
        else:  # a rolling window is no sequential run: the tests start afresh
            assert (st.s, st.c, st.scales, st.ids, st.flags, st.run_n) == \
                (None, 0, None, [], "", 0)
    assert sorted(state.assignments) == sorted(was["assignments"])
    for assignment_id, old in was["assignments"].items():
        a = state.assignments[assignment_id]
        status = old.get("status", "assigned" if old["completed_at"] is None else "completed")
        assert (a.standard, a.lesson_id, a.gap_id, a.assigned_at, a.completed_at, a.due_at,
                a.status, a.ended_at) == (
            old["standard"], old["lesson_id"], old["gap_id"], old["assigned_at"],
            old["completed_at"], old.get("due_at"), status,
            old.get("ended_at", old["completed_at"]))
    assert {k: {"standard": u.standard, "lesson_id": u.lesson_id, "pre": u.pre,
                "seen": u.seen, "assignment_id": u.assignment_id, "before": u.before,
                "after": u.after, "comparison_done": u.comparison_done}
            for k, u in state.effects.items()} == was["effects"]


@pytest.mark.parametrize("label", RELEASED)
def test_a_released_state_recognises_its_events_and_takes_new_ones(label, playbook):
    data, manifest = frozen(label)
    state = EmployeeState.from_bytes(data)
    engine = DecisionEngine(playbook)
    events = events_of(manifest)
    for event in events:  # the dedupe memory came along: every applied event is a replay
        decision = (engine.on_interaction(state, event) if isinstance(event, Interaction)
                    else engine.on_completion(state, event))
        assert decision.outcome == "duplicate", event.event_id
    last = max((e for e in events if isinstance(e, Interaction)), key=lambda e: e.ended_at)
    record = json.loads(last.model_dump_json())
    at = last.ended_at + timedelta(minutes=10)
    record.update(event_id="evt-new", interaction_id="int-new", ended_at=at.isoformat(),
                  started_at=(at - timedelta(minutes=5)).isoformat())
    decision = engine.on_interaction(state, Interaction.model_validate_json(json.dumps(record)))
    assert decision.outcome == "processed" and decision.records[0].event_id == "evt-new"
    # an open lesson of the old state can still be completed
    open_ids = [k for k, a in state.assignments.items() if a.open]
    assert open_ids
    done = LessonCompletion.model_validate_json(json.dumps({
        "event_id": "done-new", "assignment_id": open_ids[0], "employee_id": state.employee_id,
        "completed_at": (at + timedelta(minutes=1)).isoformat()}))
    decision = engine.on_completion(state, done)
    assert decision.outcome == "processed"
    assert [(r.assignment_id, r.status) for r in decision.records] == [(open_ids[0],
                                                                        "completed")]
    # written back in the current format, exactly
    written = state.to_bytes()
    assert written[0] == FORMAT_VERSION
    assert EmployeeState.from_bytes(written) == state
    if label != "v2":
        assert len(written) < len(data)


def _without(playbook: Playbook, standard: str) -> Playbook:
    doc = yaml.safe_load((Path(__file__).parents[2] / "models" / "default_playbook.yaml")
                         .read_text("utf-8"))
    del doc["standards"][standard]
    return parse_playbook(yaml.safe_dump(doc, sort_keys=False), "without.yaml")


@pytest.mark.parametrize("label", RELEASED)
def test_a_released_state_whose_standard_left_the_playbook_retires_it(label):
    """The default playbook without `greeting`, whose gap is open with its lesson assigned in
    every frozen state: the next event closes the gap and cancels the lesson, once."""
    data, manifest = frozen(label)
    state = EmployeeState.from_bytes(data)
    greeting = manifest["state"]["standards"]["greeting"]
    open_lessons = [k for k, a in manifest["state"]["assignments"].items()
                    if a["standard"] == "greeting" and a["completed_at"] is None]
    assert greeting["gap_id"] and open_lessons
    engine = DecisionEngine(_without(load_playbook(), "greeting"))
    last = max((e for e in events_of(manifest) if isinstance(e, Interaction)),
               key=lambda e: e.ended_at)
    record = json.loads(last.model_dump_json())
    at = last.ended_at + timedelta(minutes=10)
    record.update(event_id="evt-new", interaction_id="int-new", ended_at=at.isoformat(),
                  started_at=(at - timedelta(minutes=5)).isoformat())
    decision = engine.on_interaction(state, Interaction.model_validate_json(json.dumps(record)))
    assert decision.outcome == "processed"
    gaps = [r for r in decision.records if isinstance(r, PerformanceGap)]
    ended = [r for r in decision.records
             if isinstance(r, LessonAssignment) and r.status != "assigned"]
    assert [(g.gap_id, g.status, g.reason) for g in gaps] == [
        (greeting["gap_id"], "closed", "standard_retired")]
    assert gaps[0].evidence.statistic == "standard_retired"
    assert [(a.assignment_id, a.status, a.reason) for a in ended] == [
        (k, "cancelled", "standard_retired") for k in open_lessons]
    assert "greeting" not in state.standards
    assert EmployeeState.from_bytes(state.to_bytes()) == state
