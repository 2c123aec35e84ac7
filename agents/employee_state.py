"""Per-employee state the decisions read and update: evidence windows, open gaps, lessons,
recent scores, points per day and the event ids already applied (for exactly-once effects).

It is plain data that round-trips through JSON-compatible dicts, so any store can keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class StandardState:
    # Rolling window of (interaction_id, passed) over the last applicable interactions.
    window: list[tuple[str, bool]] = field(default_factory=list)
    passes: int = 0  # passes in the window, kept in step with it
    gap_id: str | None = None
    gap_opened_at: float | None = None
    gap_lesson_completed: bool = False
    gap_assignments: int = 0
    last_assigned_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "w": [[i, p] for i, p in self.window],
            "g": self.gap_id,
            "go": self.gap_opened_at,
            "gl": self.gap_lesson_completed,
            "ga": self.gap_assignments,
            "la": self.last_assigned_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardState:
        window = [(i, bool(p)) for i, p in d["w"]]
        return cls(
            window=window,
            passes=sum(p for _, p in window),
            gap_id=d["g"],
            gap_opened_at=d["go"],
            gap_lesson_completed=d["gl"],
            gap_assignments=d["ga"],
            last_assigned_at=d["la"],
        )


@dataclass(slots=True)
class AssignmentState:
    standard: str
    lesson_id: str
    gap_id: str
    assigned_at: float
    completed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.standard,
            "l": self.lesson_id,
            "g": self.gap_id,
            "a": self.assigned_at,
            "c": self.completed_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssignmentState:
        return cls(d["s"], d["l"], d["g"], d["a"], d["c"])


@dataclass(slots=True)
class EmployeeState:
    employee_id: str
    team_id: str = ""
    # digest of an applied event id -> its event time (epoch seconds); pruned past the horizon
    seen: dict[str, int] = field(default_factory=dict)
    newest: float = 0.0
    pruned_at: float = 0.0
    standards: dict[str, StandardState] = field(default_factory=dict)
    assignments: dict[str, AssignmentState] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    # days (playbook time zone) already awarded sustained excellence, kept as long as points
    excellence_days: list[str] = field(default_factory=list)
    points: dict[str, int] = field(default_factory=dict)

    def standard(self, name: str) -> StandardState:
        st = self.standards.get(name)
        if st is None:
            st = self.standards[name] = StandardState()
        return st

    def forget_days_before(self, day: str) -> None:
        """Drop per-day bookkeeping older than `day` (ISO dates compare as strings)."""
        self.points = {d: p for d, p in self.points.items() if d >= day}
        self.excellence_days = [d for d in self.excellence_days if d >= day]

    def open_assignments(self) -> int:
        return sum(1 for a in self.assignments.values() if a.completed_at is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "e": self.employee_id,
            "t": self.team_id,
            "seen": self.seen,
            "n": self.newest,
            "p": self.pruned_at,
            "std": {k: v.to_dict() for k, v in self.standards.items()},
            "asg": {k: v.to_dict() for k, v in self.assignments.items()},
            "sc": self.scores,
            "xd": self.excellence_days,
            "pts": self.points,
        }

    def __json__(self) -> dict[str, Any]:
        """Faust's JSON codec calls this when a table value is written."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmployeeState:
        return cls(
            employee_id=d["e"],
            team_id=d["t"],
            seen=dict(d["seen"]),
            newest=d["n"],
            pruned_at=d["p"],
            standards={k: StandardState.from_dict(v) for k, v in d["std"].items()},
            assignments={k: AssignmentState.from_dict(v) for k, v in d["asg"].items()},
            scores=list(d["sc"]),
            excellence_days=list(d["xd"]),
            points=dict(d["pts"]),
        )
