"""Fixtures for the decision-core tests: playbooks, an engine and event factories."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from models.events import Interaction, LessonCompletion
from models.playbook import Playbook, load_playbook, parse_playbook

# Monday 2 March 2026, 09:00 UTC: far from any DST change in the zones used by the tests.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QA_ITEMS = ("greeting", "verified_identity", "empathy", "accurate_info", "offered_more_help",
            "proper_closing")


class InteractionFactory:
    """Makes validated Interaction objects for one employee at increasing times.

    Every QA item passes unless named in `fail` (or `qa` is given); csat and resolved are not
    known unless given, so only the QA items and hold_time apply by default.
    """

    def __init__(self, employee_id: str = "emp-1", team_id: str = "team-a",
                 start: datetime = T0, step: timedelta = timedelta(minutes=15)) -> None:
        self.employee_id = employee_id
        self.team_id = team_id
        self.step = step
        self.clock = start
        self.count = 0

    def __call__(self, *, fail: tuple[str, ...] | list[str] = (), qa: dict[str, bool] | None = None,
                 csat: int | None = None, hold_s: float = 0.0, resolved: bool | None = None,
                 channel: str = "voice", at: datetime | None = None, event_id: str | None = None,
                 interaction_id: str | None = None) -> Interaction:
        self.count += 1
        if at is None:
            self.clock = self.clock + self.step
            at = self.clock
        else:
            self.clock = max(self.clock, at)
        items = {name: True for name in QA_ITEMS} if qa is None else dict(qa)
        for name in fail:
            items[name] = False
        record: dict[str, Any] = {
            "event_id": event_id or f"{self.employee_id}-evt-{self.count}",
            "interaction_id": interaction_id or f"{self.employee_id}-int-{self.count}",
            "employee_id": self.employee_id,
            "team_id": self.team_id,
            "channel": channel,
            "started_at": (at - timedelta(minutes=6)).isoformat(),
            "ended_at": at.isoformat(),
            "wait_s": 5.0,
            "talk_s": 300.0,
            "hold_s": hold_s,
            "wrap_s": 20.0,
            "transfers": 0,
            "qa": items,
        }
        if csat is not None:
            record["csat"] = csat
        if resolved is not None:
            record["resolved"] = resolved
        # Validated from JSON, exactly as the pipeline reads it.
        return Interaction.model_validate_json(json.dumps(record))

    def pattern(self, outcomes: str, standard: str, **kwargs: Any) -> list[Interaction]:
        """One interaction per character: 'P' passes `standard`, 'F' fails it."""
        assert set(outcomes) <= {"P", "F"}, outcomes
        return [self(fail=(standard,) if c == "F" else (), **kwargs) for c in outcomes]


def make_completion(assignment_id: str, at: datetime, *, employee_id: str = "emp-1",
                    lesson_id: str | None = None, event_id: str | None = None) -> LessonCompletion:
    record: dict[str, Any] = {
        "event_id": event_id or f"done-{assignment_id}-{at.isoformat()}",
        "assignment_id": assignment_id,
        "employee_id": employee_id,
        "completed_at": at.isoformat(),
    }
    if lesson_id is not None:
        record["lesson_id"] = lesson_id
    return LessonCompletion.model_validate_json(json.dumps(record))


def build_playbook(standards: dict[str, float | dict[str, Any]] | None = None, *,
                   evidence: dict[str, Any] | None = None, rewards: dict[str, Any] | None = None,
                   limits: dict[str, Any] | None = None, timezone: str = "UTC",
                   version: str = "test-1") -> Playbook:
    """A small playbook written as YAML text and parsed like a real one.

    `standards` maps a name to its target (a QA check `qa.<name>` with lesson `lesson-<name>`)
    or to a full standard mapping. Evidence: the playbook defaults unless given.
    """
    stds: dict[str, Any] = {}
    for name, spec in (standards or {"greeting": 0.8}).items():
        if isinstance(spec, dict):
            stds[name] = {"title": name, "lesson": f"lesson-{name}", **spec}
        else:
            stds[name] = {"title": name, "check": {"field": f"qa.{name}", "op": "is_true"},
                          "target": spec, "lesson": f"lesson-{name}"}
    doc = {
        "version": version,
        "timezone": timezone,
        "evidence": {**(evidence or {})},
        "standards": stds,
        "lessons": {s["lesson"]: {"title": f"Lesson on {n}", "due_days": 3}
                    for n, s in stds.items()},
        "rewards": rewards or {},
        "limits": {"max_open_lessons": 2, "lesson_cooldown_hours": 72, "daily_points_cap": 150,
                   **(limits or {})},
    }
    return parse_playbook(yaml.safe_dump(doc, sort_keys=False), "custom.yaml")


@pytest.fixture(scope="session")
def playbook() -> Playbook:
    """The shipped default playbook."""
    return load_playbook()


@pytest.fixture
def engine(playbook: Playbook) -> DecisionEngine:
    return DecisionEngine(playbook)


@pytest.fixture
def state() -> EmployeeState:
    return EmployeeState("emp-1")


@pytest.fixture
def interactions() -> InteractionFactory:
    """Interaction factory for employee emp-1, one interaction every 15 minutes from T0."""
    return InteractionFactory()


@pytest.fixture
def interaction_factory() -> Callable[..., InteractionFactory]:
    """Build more factories: interaction_factory(employee_id=..., start=..., step=...)."""
    return InteractionFactory


@pytest.fixture
def completion() -> Callable[..., LessonCompletion]:
    """completion(assignment_id, at, lesson_id=None, event_id=None) -> LessonCompletion."""
    return make_completion


@pytest.fixture
def custom_playbook() -> Callable[..., Playbook]:
    """custom_playbook({"a": 0.8, ...}, evidence=..., rewards=..., limits=..., timezone=...)."""
    return build_playbook
