"""Freeze an employee state as a released version of Frontline wrote it to the changelog.

    git worktree add /tmp/frontline-<commit> <commit>
    python tests/agents/state_formats/freeze.py /tmp/frontline-<commit> <commit>

Runs that version's own engine (from the worktree, with its default playbook) over a fixed
scenario for one employee, and writes next to this file `<commit>.state`, the bytes that version
wrote (through Faust's JSON codec before EmployeeState had `to_bytes`), and `<commit>.json`:
the lesson completions applied besides the scenario's interactions (`scenario.json`, the same
for every version) and what the state held, read from that version's objects, for
test_state_formats.py to check the decoded state against and to replay the events. Needs only
the standard library, pydantic and PyYAML (and faust for the versions that wrote through its
codec).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EMPLOYEE, TEAM = "emp-42", "team-7"
QA = ("greeting", "verified_identity", "empathy", "accurate_info", "offered_more_help",
      "proper_closing")
T0 = datetime(2026, 11, 2, 8, 0, 0, 250000, tzinfo=UTC)  # a Monday; sub-second times


def scenario() -> list[tuple[str, dict[str, Any]]]:
    """Interactions over two working days: empathy fails often at first (a gap, a lesson, a
    completion), greeting later (a gap with its lesson still open at the end), some delighted
    customers (points on both days). Completions are added by `run` as lessons are assigned."""
    events: list[tuple[str, dict[str, Any]]] = []
    n = 0
    for day in range(2):
        start = T0 + timedelta(days=day)
        for i in range(40):
            n += 1
            at = start + timedelta(minutes=12 * i, seconds=n % 7 * 0.5)
            fail: set[str] = set()
            if day == 0 and i < 30 and i % 5 != 4:
                fail.add("empathy")
            if day == 1 and i >= 5 and i % 4 != 3:
                fail.add("greeting")
            record = {
                "event_id": f"evt-{n}", "interaction_id": f"int-{n}", "employee_id": EMPLOYEE,
                "team_id": TEAM, "channel": "voice" if n % 3 else "chat",
                "started_at": (at - timedelta(minutes=6)).isoformat(),
                "ended_at": at.isoformat(), "wait_s": 5.0, "talk_s": 300.0,
                "hold_s": 20.0 if n % 9 else 75.0, "wrap_s": 20.0, "transfers": 0,
                "qa": {q: q not in fail for q in QA},
            }
            if n % 4 == 0:
                record["csat"] = 5 if n % 8 == 0 else 3
            if n % 5 == 0:
                record["resolved"] = n % 10 == 0
            events.append(("interaction", record))
    return events


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def summary(state: Any) -> Any:
    """What the state held, field by field, as that version named it."""
    standards = {}
    for name, st in state.standards.items():
        fields = {k: getattr(st, k) for k in (
            "s", "c", "scales", "ids", "flags", "run_n", "run_passes", "gap_id",
            "gap_opened_at", "gap_lesson_completed", "gap_assignments", "gap_deferred",
            "last_assigned_at") if hasattr(st, k)}
        if hasattr(st, "window"):
            fields["window"] = [list(x) for x in st.window]
        standards[name] = fields
    assignments = {k: {f: getattr(a, f) for f in (
        "standard", "lesson_id", "gap_id", "assigned_at", "completed_at", "due_at", "status",
        "ended_at") if hasattr(a, f)} for k, a in state.assignments.items()}
    effects = {k: {f: getattr(u, f) for f in (
        "standard", "lesson_id", "pre", "seen", "assignment_id", "before", "after",
        "comparison_done")} for k, u in getattr(state, "effects", {}).items()}
    excellence = getattr(state, "excellence_days", None)
    if excellence is None:
        day = state.excellence_day
        excellence = [] if day is None else [day]
    return _plain({
        "employee_id": state.employee_id, "team_id": state.team_id, "newest": state.newest,
        "pruned_at": state.pruned_at, "seen": len(state.seen), "standards": standards,
        "assignments": assignments, "effects": effects, "scores": state.scores,
        "excellence_days": list(excellence), "points": state.points})


def run(tree: str, label: str) -> None:
    sys.path.insert(0, tree)
    from agents.decision_engine import DecisionEngine
    from agents.employee_state import EmployeeState
    from models.events import Interaction, LessonAssignment, LessonCompletion
    from models.playbook import load_playbook

    playbook = load_playbook()
    engine = DecisionEngine(playbook)
    state = EmployeeState(EMPLOYEE)
    pending = scenario()
    applied: list[dict[str, Any]] = []
    completed = 0
    while pending:
        kind, record = pending.pop(0)
        model = Interaction if kind == "interaction" else LessonCompletion
        event: Any = model.model_validate_json(json.dumps(record))
        decision = (engine.on_interaction(state, event) if kind == "interaction"
                    else engine.on_completion(state, event))
        assert decision.outcome == "processed", (record, decision)
        applied.append({"kind": kind, "record": record})
        for out in decision.records:
            if isinstance(out, LessonAssignment) and getattr(out, "status",
                                                             "assigned") == "assigned":
                if completed:  # the second lesson stays open
                    continue
                completed += 1
                done_at = out.at + timedelta(hours=2, microseconds=137204)
                completion = {"event_id": f"done-{completed}",
                              "assignment_id": out.assignment_id, "employee_id": EMPLOYEE,
                              "lesson_id": out.lesson_id, "completed_at": done_at.isoformat()}
                # delivered after the interactions that end before it
                at = [i for i, (_, r) in enumerate(pending)
                      if r.get("ended_at", "") > done_at.isoformat()]
                pending.insert(at[0] if at else len(pending), ("completion", completion))
    if hasattr(state, "to_bytes"):
        data = state.to_bytes()
    else:  # the first versions wrote the table value through Faust's JSON codec (__json__)
        from faust.serializers import codecs
        data = codecs.dumps("json", state)
    with open(os.path.join(HERE, f"{label}.state"), "wb") as f:
        f.write(data)
    interactions = [e["record"] for e in applied if e["kind"] == "interaction"]
    shared = os.path.join(HERE, "scenario.json")
    if os.path.exists(shared):
        with open(shared, encoding="utf-8") as f:
            assert json.load(f) == interactions, "the scenario changed: freeze every version again"
    else:
        _write(shared, interactions)
    _write(os.path.join(HERE, f"{label}.json"), {
        "commit": label, "playbook_version": playbook.version,
        "writer": "to_bytes" if hasattr(state, "to_bytes") else "faust json codec",
        "completions": [e["record"] for e in applied if e["kind"] == "completion"],
        "state": summary(state)})
    print(f"{label}: {len(data)} bytes, {len(applied)} events, "
          f"{sum(1 for a in state.assignments.values())} assignments")


def _write(path: str, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: freeze.py WORKTREE LABEL")
    run(os.path.abspath(sys.argv[1]), sys.argv[2])
