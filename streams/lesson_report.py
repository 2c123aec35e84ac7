"""The lesson report (`frontline ledger lessons`): per lesson, how its assignments ended, how
long completing it took, and its effect from the ledger's lesson-effect measurements (the
difference in differences of agents.lesson_effect, with its 95 % interval); text, JSON, or
one self-contained HTML page with charts."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from html import escape
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


# ---- HTML: one self-contained file (inline CSS and SVG, no scripts, nothing fetched) ----------

_STATUS_COLOURS = {"completed": "#2e7d32", "expired": "#c62828", "cancelled": "#9e9e9e",
                   "superseded": "#6d4c41", "open": "#1565c0"}


def render_html(lessons: list[LessonSummary], *, title: str = "Frontline lessons",
                generated: str = "") -> str:
    """A page with two charts (effect with its interval per lesson; how assignments ended) and
    the table, for supervisors and training managers."""
    rows = [s.as_dict() for s in lessons]
    head = "".join(f"<th>{escape(h)}</th>" for h in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(show(d))}</td>" for show in _COLUMNS.values())
                   + "</tr>" for d in rows)
    note = f"<p class='meta'>{escape(generated)}</p>" if generated else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #212121; max-width: 1100px; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ padding: 0.25rem 0.6rem; border-bottom: 1px solid #e0e0e0; text-align: right;
          white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
.meta, .note {{ color: #616161; font-size: 0.85rem; }}
svg text {{ font-size: 12px; fill: #212121; }}
</style></head><body>
<h1>{escape(title)}</h1>{note}
<h2>Effect of each lesson on its standard's pass rate</h2>
<p class="note">Difference in differences: the pass-rate change after a completed lesson minus
the change for gaps of the same kind without one; the bar is the 95 % interval. An interval that
crosses 0 shows no detectable effect.</p>
{_effect_chart(rows)}
<h2>How assignments ended</h2>
{_status_chart(rows)}
<h2>Lessons</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p class="note">completion: completed / ended; median h: from assigned to completed.</p>
</body></html>
"""


def _effect_chart(rows: list[dict[str, Any]]) -> str:
    label_w, plot_w, row_h = 200, 560, 28
    height = 40 + row_h * max(1, len(rows))
    values = [v for d in rows for v in (d["effect"], d["ci_low"], d["ci_high"]) if v is not None]
    span = max([0.2, *(abs(v) for v in values)])
    span = math.ceil(span * 10) / 10

    def x(v: float) -> float:
        return label_w + plot_w * (v + span) / (2 * span)

    parts = [_svg_open(label_w + plot_w + 20, height, "effect",
                       "lesson effects with 95 % intervals"),
             (f'<line x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 25}" '
              f'stroke="#757575" stroke-dasharray="4 3"/>')]
    for tick in (-span, -span / 2, 0.0, span / 2, span):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{tick:+.2f}</text>')
    for i, d in enumerate(rows):
        y = 25 + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">'
                     f'{escape(d["lesson_id"])}</text>')
        if d["effect"] is None:
            parts.append(f'<text x="{x(0) + 6:.1f}" y="{y + 4}" fill="#757575">'
                         f'not enough measurements</text>')
            continue
        if d["ci_low"] is not None:
            parts.append(f'<line class="ci" x1="{x(d["ci_low"]):.1f}" y1="{y}" '
                         f'x2="{x(d["ci_high"]):.1f}" y2="{y}" stroke="#1565c0" '
                         f'stroke-width="3"/>')
        parts.append(f'<circle class="effect" cx="{x(d["effect"]):.1f}" cy="{y}" r="5" '
                     f'fill="#0d47a1"><title>{escape(d["lesson_id"])}: '
                     f'{d["effect"]:+.3f}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _status_chart(rows: list[dict[str, Any]]) -> str:
    label_w, plot_w, row_h = 200, 560, 24
    height = 50 + row_h * max(1, len(rows))
    most = max([1, *(d["assignments"] for d in rows)])
    parts = [_svg_open(label_w + plot_w + 20, height, "status",
                       "assignments by how they ended")]
    for i, d in enumerate(rows):
        y = 10 + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">'
                     f'{escape(d["lesson_id"])}</text>')
        left = float(label_w)
        for status, colour in _STATUS_COLOURS.items():
            n = d.get(status, 0)
            if not n:
                continue
            w = plot_w * n / most
            parts.append(f'<rect class="bar" x="{left:.1f}" y="{y}" width="{w:.1f}" '
                         f'height="{row_h - 6}" fill="{colour}"><title>{status}: {n}</title>'
                         f'</rect>')
            left += w
    legend_y = height - 14
    for j, (status, colour) in enumerate(_STATUS_COLOURS.items()):
        lx = label_w + j * 110
        parts.append(f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" '
                     f'fill="{colour}"/><text x="{lx + 16}" y="{legend_y}">{status}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, kind: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart {kind}" '
            f'width="{width}" height="{height}" aria-label="{escape(label)}">')
