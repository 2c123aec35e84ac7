"""The lesson report (`frontline ledger lessons`): per lesson, how its assignments ended, how
long completing it took, and its effect from the ledger's lesson-effect measurements (the
difference in differences of agents.lesson_effect, with its 95 % interval); text or JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select

from agents.lesson_effect import EffectEstimate, Measurement, estimate
from models.events import ENDED_STATUSES
from models.ledger import Assignment, Effect
from streams.ledger_store import OPEN_STATUSES, utc


@dataclass(frozen=True, slots=True)
class LessonSummary:
    lesson_id: str
    by_status: dict[str, int]  # assignment status -> count
    hours_to_complete: list[float]  # assigned -> completed, per completed assignment
    effect: EffectEstimate

    @property
    def assignments(self) -> int:
        return sum(self.by_status.values())

    @property
    def ended(self) -> int:
        return sum(self.by_status.get(s, 0) for s in ENDED_STATUSES)

    @property
    def completion_rate(self) -> float | None:
        """Completed among the assignments that ended (open ones have not had their chance)."""
        return self.by_status.get("completed", 0) / self.ended if self.ended else None

    @property
    def median_hours_to_complete(self) -> float | None:
        return median(self.hours_to_complete) if self.hours_to_complete else None

    def as_dict(self) -> dict[str, Any]:
        rate, hours = self.completion_rate, self.median_hours_to_complete
        return {"lesson_id": self.lesson_id, "assignments": self.assignments,
                **{s: self.by_status.get(s, 0) for s in ENDED_STATUSES},
                "open": sum(self.by_status.get(s, 0) for s in OPEN_STATUSES),
                "completion_rate": None if rate is None else round(rate, 4),
                "median_hours_to_complete": None if hours is None else round(hours, 2),
                **self.effect.as_dict()}


def lesson_summaries(engine: Engine, *, since: datetime | None = None,
                     team_id: str | None = None,
                     employee_id: str | None = None) -> list[LessonSummary]:
    """Every lesson with an assignment or a measurement matching the filters, by lesson id.
    `since` counts assignments made and measurements finished from then on."""
    chosen = _filters(Assignment, Assignment.assigned_at, since, team_id, employee_id)
    statuses = (select(Assignment.lesson_id, Assignment.status, func.count()).where(*chosen)
                .group_by(Assignment.lesson_id, Assignment.status))
    completed = select(Assignment.lesson_id, Assignment.assigned_at,
                       Assignment.completed_at).where(*chosen, Assignment.status == "completed")
    effects = select(Effect.lesson_id, Effect.group_name, Effect.before_passes,
                     Effect.before_n, Effect.after_passes, Effect.after_n).where(
        *_filters(Effect, Effect.at, since, team_id, employee_id))
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    hours: dict[str, list[float]] = defaultdict(list)
    measurements: dict[str, list[Measurement]] = defaultdict(list)
    with engine.connect() as conn:
        for lesson_id, status, n in conn.execute(statuses):
            by_status[lesson_id][status] = int(n)
        for lesson_id, assigned_at, completed_at in conn.execute(completed):
            if completed_at is not None:
                spent = utc(completed_at) - utc(assigned_at)
                hours[lesson_id].append(spent.total_seconds() / 3600)
        for lesson_id, group, *counts in conn.execute(effects):
            measurements[lesson_id].append(Measurement(group, *counts))
    return [LessonSummary(lesson_id, by_status.get(lesson_id, {}), hours.get(lesson_id, []),
                          estimate(measurements.get(lesson_id, [])))
            for lesson_id in sorted(by_status.keys() | measurements.keys())]


def render_json(lessons: list[LessonSummary]) -> str:
    return json.dumps({"lessons": [s.as_dict() for s in lessons]}, indent=1)


# column heading -> how a summary's value is shown
_COLUMNS: dict[str, Any] = {
    "lesson": lambda d: d["lesson_id"],
    "assignments": lambda d: str(d["assignments"]),
    **{s: (lambda d, s=s: str(d[s])) for s in ENDED_STATUSES},
    "open": lambda d: str(d["open"]),
    "completion": lambda d: _or_dash(d["completion_rate"], lambda v: f"{100 * v:.1f} %"),
    "median h": lambda d: _or_dash(d["median_hours_to_complete"], lambda v: f"{v:.1f}"),
    "effect": lambda d: _or_dash(d["effect"], lambda v: f"{v:+.3f}"),
    "95 % CI": lambda d: "-" if d["ci_low"] is None else
    f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]",
    "n lesson": lambda d: str(d["n_lesson"]),
    "n comparison": lambda d: str(d["n_comparison"]),
}


def render_text(lessons: list[LessonSummary]) -> str:
    """An aligned table (lesson ids left, numbers right) and what the effect means."""
    cells = [[show(s.as_dict()) for show in _COLUMNS.values()] for s in lessons]
    headings = list(_COLUMNS)
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headings)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    out = [line(headings), *(line(row) for row in cells), f"({len(lessons)} lessons)",
           "completion: completed / ended; median h: from assigned to completed",
           ("effect: the standard's pass-rate change after the lesson minus the change "
            "without one (n comparison gaps)")]
    return "\n".join(out)


def _filters(model: type[Assignment | Effect], time_column: Any, since: datetime | None,
             team_id: str | None, employee_id: str | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if team_id is not None:
        out.append(model.team_id == team_id)
    if employee_id is not None:
        out.append(model.employee_id == employee_id)
    if since is not None:
        out.append(time_column >= utc(since))
    return out


def _or_dash(value: float | None, show: Any) -> str:
    return "-" if value is None else str(show(value))
