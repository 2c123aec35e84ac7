"""Per-employee state the decisions read and update: evidence windows, open gaps, lessons,
recent scores, points per day and the event ids already applied (for exactly-once effects).

It is plain data that round-trips through JSON-compatible dicts, so any store can keep it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agents.ids import DIGEST_LEN

_DAY_S = 86400
# plain data, no cycles: skipping the circular-reference check saves a fifth of the encoding
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class SeenIds:
    """The dedupe memory: fingerprints of applied event ids, bucketed by the UTC day of their
    event time. Pruning drops whole days, so it keeps a superset of what the horizon needs,
    and a day serializes as one string (cheap to write on every state change)."""

    __slots__ = ("_ids", "days")

    def __init__(self, days: dict[int, list[str]] | None = None) -> None:
        self.days: dict[int, list[str]] = days or {}
        self._ids = {d for ids in self.days.values() for d in ids}

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, fingerprint: str, at: float) -> None:
        if fingerprint not in self._ids:
            self._ids.add(fingerprint)
            self.days.setdefault(int(at // _DAY_S), []).append(fingerprint)

    def forget_before(self, floor: float) -> None:
        """Forget days that end before `floor` (epoch seconds)."""
        for day in [d for d in self.days if (d + 1) * _DAY_S <= floor]:
            self._ids.difference_update(self.days.pop(day))

    def oldest(self) -> float | None:
        """Start of the oldest day still remembered (epoch seconds)."""
        return min(self.days) * _DAY_S if self.days else None

    def to_dict(self) -> dict[str, str]:
        return {str(day): "".join(ids) for day, ids in self.days.items()}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> SeenIds:
        return cls({int(day): [s[i:i + DIGEST_LEN] for i in range(0, len(s), DIGEST_LEN)]
                    for day, s in d.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeenIds) and self.days == other.days

    def __repr__(self) -> str:
        return f"SeenIds({len(self)} ids over {len(self.days)} days)"


@dataclass(slots=True)
class StandardState:
    # The sequential tests (agents/gap_rule.py): `s` the opening statistic (None until the
    # first outcome, which starts it at its head start), `c` the closing statistic while a gap
    # is open. The evidence run: the last interaction ids since the active statistic last stood
    # at zero and, in step, one character per outcome ("1" passed, "0" failed), plus the run's
    # full length and passes. Kept as a list and a string: they encode fast.
    s: int | None = None
    c: int = 0
    # "opening/closing" integer units per log-likelihood-ratio unit of `s` and `c` when they
    # were last stepped (a string: it is encoded on every state write): a playbook change that
    # moves the tests' steps rescales them (agents/gap_rule.py)
    scales: str | None = None
    ids: list[str] = field(default_factory=list)
    flags: str = ""
    run_n: int = 0
    run_passes: int = 0
    gap_id: str | None = None
    gap_opened_at: float | None = None
    gap_lesson_completed: bool = False
    gap_assignments: int = 0
    gap_deferred: bool = False  # a record said why this gap's lesson waits
    last_assigned_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.s,
            "c": self.c,
            "k": self.scales,
            "wi": self.ids,
            "wp": self.flags,
            "rn": self.run_n,
            "rp": self.run_passes,
            "g": self.gap_id,
            "go": self.gap_opened_at,
            "gl": self.gap_lesson_completed,
            "ga": self.gap_assignments,
            "gd": self.gap_deferred,
            "la": self.last_assigned_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardState:
        if len(d["wi"]) != len(d["wp"]):
            raise ValueError("window ids and outcomes differ in length")
        fresh = "s" not in d  # written by the rolling-window version: its window is no run
        return cls(
            s=d.get("s"),
            c=d.get("c", 0),
            scales=d.get("k"),
            ids=[] if fresh else list(d["wi"]),
            flags="" if fresh else d["wp"],
            run_n=d.get("rn", 0),
            run_passes=d.get("rp", 0),
            gap_id=d["g"],
            gap_opened_at=d["go"],
            gap_lesson_completed=d["gl"],
            gap_assignments=d["ga"],
            gap_deferred=d.get("gd", False),
            last_assigned_at=d["la"],
        )


@dataclass(slots=True)
class EffectUnit:
    """A gap whose standard is being measured for its lesson's effect: the outcomes since the
    gap opened (`pre`, the last 2 x window), then, once its lesson is completed, the window
    before completion (`before`) and the outcomes after it (`after`)."""

    standard: str
    lesson_id: str
    pre: str = ""
    seen: int = 0  # applicable outcomes since the gap opened
    assignment_id: str | None = None
    before: str | None = None
    after: str | None = None
    comparison_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"s": self.standard, "l": self.lesson_id, "p": self.pre, "n": self.seen,
                "a": self.assignment_id, "b": self.before, "f": self.after,
                "cd": self.comparison_done}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EffectUnit:
        return cls(d["s"], d["l"], d["p"], d["n"], d["a"], d["b"], d["f"], d["cd"])


@dataclass(slots=True)
class AssignmentState:
    standard: str
    lesson_id: str
    gap_id: str
    assigned_at: float
    completed_at: float | None = None
    due_at: float | None = None
    status: str = "assigned"  # assigned | completed | expired | superseded | cancelled
    ended_at: float | None = None

    @property
    def open(self) -> bool:
        return self.status == "assigned"

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.standard,
            "l": self.lesson_id,
            "g": self.gap_id,
            "a": self.assigned_at,
            "c": self.completed_at,
            "d": self.due_at,
            "st": self.status,
            "e": self.ended_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssignmentState:
        status = d.get("st", "assigned" if d["c"] is None else "completed")
        return cls(d["s"], d["l"], d["g"], d["a"], d["c"], d.get("d"), status,
                   d.get("e", d["c"]))


@dataclass(slots=True)
class EmployeeState:
    employee_id: str
    team_id: str = ""
    # fingerprints of the event ids already applied; pruned past the dedupe horizon
    seen: SeenIds = field(default_factory=SeenIds)
    newest: float = 0.0
    pruned_at: float = 0.0
    standards: dict[str, StandardState] = field(default_factory=dict)
    assignments: dict[str, AssignmentState] = field(default_factory=dict)
    effects: dict[str, EffectUnit] = field(default_factory=dict)  # by gap id
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
        return sum(1 for a in self.assignments.values() if a.open)

    def to_dict(self) -> dict[str, Any]:
        return {
            "e": self.employee_id,
            "t": self.team_id,
            "seen": self.seen.to_dict(),
            "n": self.newest,
            "p": self.pruned_at,
            "std": {k: v.to_dict() for k, v in self.standards.items()},
            "asg": {k: v.to_dict() for k, v in self.assignments.items()},
            "fx": {k: v.to_dict() for k, v in self.effects.items()},
            "sc": self.scores,
            "xd": self.excellence_days,
            "pts": self.points,
        }

    def to_bytes(self) -> bytes:
        """Compact JSON, as written to the state changelog."""
        return _ENCODER.encode(self.to_dict()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EmployeeState:
        return cls.from_dict(json.loads(data))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmployeeState:
        return cls(
            employee_id=d["e"],
            team_id=d["t"],
            seen=SeenIds.from_dict(d["seen"]),
            newest=d["n"],
            pruned_at=d["p"],
            standards={k: StandardState.from_dict(v) for k, v in d["std"].items()},
            assignments={k: AssignmentState.from_dict(v) for k, v in d["asg"].items()},
            effects={k: EffectUnit.from_dict(v) for k, v in d.get("fx", {}).items()},
            scores=list(d["sc"]),
            excellence_days=list(d["xd"]),
            points=dict(d["pts"]),
        )
