"""Bonus points: rules from the playbook and the per-employee daily points cap."""

from __future__ import annotations

from dataclasses import dataclass

from agents.employee_state import EmployeeState
from models.playbook import Limits


@dataclass(frozen=True, slots=True)
class Grant:
    points: int
    requested: int


def grant_points(state: EmployeeState, day: str, requested: int, limits: Limits) -> Grant | None:
    """Charge points against the day's cap; None when the cap leaves nothing to award.

    The day's history is kept as long as the dedupe horizon admits late events for it
    (the decision engine prunes it), so a late event still meets the cap.
    """
    used = state.points.get(day, 0)
    allowed = min(requested, limits.daily_points_cap - used)
    if allowed <= 0:
        return None
    state.points[day] = used + allowed
    return Grant(allowed, requested)


def rolling_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0
