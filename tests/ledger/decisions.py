"""Ledger input for tests and the ledger benchmark: what the pipeline publishes for simulated
traffic, computed with the pure decision core (no broker)."""

from __future__ import annotations

from datetime import timedelta

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from models.events import (
    BonusAward,
    Interaction,
    LessonAssignment,
    LessonCompletion,
    PerformanceGap,
)
from models.playbook import load_playbook
from streams.ledger_store import LedgerRecord
from streams.simulator import Simulator, SimulatorConfig


def simulated_decisions(*, seed: int, interactions: int, employees: int = 12,
                        teams: int = 3) -> list[LedgerRecord]:
    """Awards, gaps and assignments in stream order, each lesson completed ~1 h after it was
    assigned (a completion follows its assignment, as on the topics)."""
    engine = DecisionEngine(load_playbook())
    sim = Simulator(SimulatorConfig(seed=seed, employees=employees, teams=teams,
                                    malformed_share=0.0, duplicate_share=0.0))
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
            if isinstance(r, BonusAward | PerformanceGap | LessonAssignment):
                out.append(r)
            if isinstance(r, LessonAssignment):
                done = LessonCompletion(event_id=f"done-{r.assignment_id}",
                                        assignment_id=r.assignment_id,
                                        employee_id=r.employee_id, lesson_id=r.lesson_id,
                                        completed_at=r.at + timedelta(hours=1))
                if engine.on_completion(state, done).outcome == "processed":
                    out.append(done)
    return out
