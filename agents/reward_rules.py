"""Bonus points: rules from the playbook and the per-employee daily points cap."""

from __future__ import annotations

from dataclasses import dataclass

from agents.employee_state import EmployeeState
from models.playbook import Limits

# Days of points history kept; covers the dedupe horizon so late events still meet the cap.
_POINTS_DAYS_KEPT = 8


@dataclass(frozen=True, slots=True)
class Grant:
    points: int
    requested: int


def grant_points(state: EmployeeState, day: str, requested: int, limits: Limits) -> Grant | None:
    """Charge points against the day's cap; None when the cap leaves nothing to award."""
    used = state.points.get(day, 0)
    allowed = min(requested, limits.daily_points_cap - used)
    if allowed <= 0:
        return None
    state.points[day] = used + allowed
    if len(state.points) > _POINTS_DAYS_KEPT:
        for old in sorted(state.points)[:-_POINTS_DAYS_KEPT]:
            del state.points[old]
    return Grant(allowed, requested)


def rolling_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0
