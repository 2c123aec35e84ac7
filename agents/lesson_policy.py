"""Whether a gap may get its micro-lesson now: one open lesson per standard, a cap on open
lessons per employee and a cooldown per standard, so that training never floods anyone."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.employee_state import EmployeeState, StandardState
from models.playbook import Limits


def lesson_block(state: EmployeeState, st: StandardState, standard: str, now: float,
                 limits: Limits) -> str | None:
    """Why the standard's lesson cannot be assigned now, or None when it can."""
    for a in state.assignments.values():
        if a.standard == standard and a.completed_at is None:
            return "an assignment for this standard is still open"
    open_now = state.open_assignments()
    if open_now >= limits.max_open_lessons:
        return f"employee has {open_now} open lessons (cap {limits.max_open_lessons})"
    if st.last_assigned_at is not None:
        ready = st.last_assigned_at + limits.lesson_cooldown_hours * 3600.0
        if now < ready:
            until = datetime.fromtimestamp(ready, UTC).isoformat()
            return f"cooldown for this standard until {until}"
    return None
