"""Whether a gap may get its micro-lesson now: a cap on open lessons per employee and a
cooldown per standard, so that training never floods anyone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from agents.employee_state import EmployeeState, StandardState
from models.playbook import Limits


@dataclass(frozen=True, slots=True)
class Block:
    code: str  # the playbook limit that holds the lesson back
    reason: str


def lesson_block(state: EmployeeState, st: StandardState, now: float,
                 limits: Limits) -> Block | None:
    """Why the standard's lesson cannot be assigned now, or None when it can."""
    open_now = sum(1 for a in state.assignments.values() if a.open and a.gap_id != st.gap_id)
    if open_now >= limits.max_open_lessons:
        return Block("max_open_lessons",
                     f"employee has {open_now} open lessons (cap {limits.max_open_lessons})")
    if st.last_assigned_at is not None:
        ready = st.last_assigned_at + limits.lesson_cooldown_hours * 3600.0
        if now < ready:
            until = datetime.fromtimestamp(ready, UTC).isoformat()
            return Block("cooldown", f"cooldown for this standard until {until}")
    return None
