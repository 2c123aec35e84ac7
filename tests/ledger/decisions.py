"""Ledger input for tests and the ledger benchmark: what the pipeline publishes for simulated
traffic, computed with the pure decision core (no broker), and small hand-made records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from models.events import (
    BonusAward,
    Evidence,
    Interaction,
    LessonAssignment,
    LessonCompletion,
    LessonEffect,
    PerformanceGap,
)
from models.playbook import load_playbook
from streams.ledger_store import LedgerRecord
from streams.simulator import Simulator, SimulatorConfig

LEDGER_TYPES = (BonusAward, PerformanceGap, LessonAssignment, LessonEffect)


def simulated_decisions(*, seed: int, interactions: int, employees: int = 12,
                        teams: int = 3, complete_share: float = 1.0) -> list[LedgerRecord]:
    """Awards, gaps, assignments (assigned and how they ended), lesson effects and the
    completions the worker accepted, in stream order. A share `complete_share` of the lessons
    is completed ~1 h after it was assigned (a completion follows its assignment, as on the
    topics); the others end as the worker decides (expired, superseded, cancelled)."""
    engine = DecisionEngine(load_playbook())
    sim = Simulator(SimulatorConfig(seed=seed, employees=employees, teams=teams,
                                    malformed_share=0.0, duplicate_share=0.0))
    chance = random.Random(seed)
    states: dict[str, EmployeeState] = {}
    out: list[LedgerRecord] = []
    produced = 0
    while produced < interactions:
        record = sim.next_record()
        if record.topic_kind != "interaction":
            continue
        produced += 1
        ev = Interaction.model_validate_json(record.value)
        state = states.setdefault(ev.employee_id, EmployeeState(ev.employee_id))
        for r in engine.on_interaction(state, ev).records:
            if isinstance(r, LEDGER_TYPES):
                out.append(r)
            if (isinstance(r, LessonAssignment) and r.status == "assigned"
                    and chance.random() < complete_share):
                done = LessonCompletion(event_id=f"done-{r.assignment_id}",
                                        assignment_id=r.assignment_id,
                                        employee_id=r.employee_id, lesson_id=r.lesson_id,
                                        completed_at=r.at + timedelta(hours=1))
                decision = engine.on_completion(state, done)
                if decision.outcome == "processed":
                    out.append(done)
                    out.extend(x for x in decision.records if isinstance(x, LEDGER_TYPES))
    return out


# ---- hand-made records ---------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _base(employee_id: str, team_id: str, at: datetime) -> dict[str, object]:
    return {"employee_id": employee_id, "team_id": team_id, "playbook_version": "test-1",
            "at": at}


def assigned(assignment_id: str, *, employee_id: str = "emp-1", team_id: str = "team-a",
             lesson_id: str = "lesson-empathy", standard: str = "empathy",
             gap_id: str | None = None, at: datetime = T0,
             due_days: float = 7) -> LessonAssignment:
    """The worker's `assigned` record of one lesson."""
    return LessonAssignment(
        assignment_id=assignment_id, lesson_id=lesson_id, lesson_title=lesson_id.title(),
        standard=standard, gap_id=gap_id or f"gap-{assignment_id}",
        due_at=at + timedelta(days=due_days),
        evidence=Evidence(interaction_ids=[], statistic="open_gap", detail="test"),
        **_base(employee_id, team_id, at))  # type: ignore[arg-type]


def ended(a: LessonAssignment, status: str, *, hours: float = 2,
          completion_event_id: str | None = None) -> LessonAssignment:
    """The worker's ending record of `a`: `status` `hours` after it was assigned."""
    at = a.at + timedelta(hours=hours)
    return a.model_copy(update={
        "status": status, "ended_at": at, "at": at,
        "completion_event_id": completion_event_id if status == "completed" else None,
        "evidence": Evidence(interaction_ids=[], statistic="lesson_status", detail=status)})


def completion(a: LessonAssignment, event_id: str, *, employee_id: str | None = None,
               hours: float = 2) -> LessonCompletion:
    """A lesson completion of `a` from the learning system."""
    return LessonCompletion(event_id=event_id, assignment_id=a.assignment_id,
                            employee_id=employee_id or a.employee_id, lesson_id=a.lesson_id,
                            completed_at=a.at + timedelta(hours=hours))


def effect(effect_id: str, group: str, before: tuple[int, int], after: tuple[int, int], *,
           lesson_id: str = "lesson-empathy", employee_id: str = "emp-1",
           team_id: str = "team-a", at: datetime = T0,
           assignment_id: str | None = None) -> LessonEffect:
    """A lesson-effect measurement: (passes, n) before and after."""
    return LessonEffect(
        effect_id=effect_id, gap_id=f"gap-{effect_id}", assignment_id=assignment_id,
        lesson_id=lesson_id, standard="empathy", group=group,  # type: ignore[arg-type]
        window=max(before[1], after[1]), before_passes=before[0], before_n=before[1],
        after_passes=after[0], after_n=after[1], **_base(employee_id, team_id, at))
