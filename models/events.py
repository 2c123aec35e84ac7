"""The contract: pydantic models of every record Frontline reads from or writes to a topic.

Inputs are validated strictly (wrong types are refused, not coerced; numbers must be finite;
every field has a bound); unknown extra fields are ignored so that producers can add fields
without breaking the pipeline.

Event times (`started_at`, `ended_at`, `completed_at`) must lie in [2000-01-01, 2100-01-01) UTC
(EARLIEST_EVENT_TIME, LATEST_EVENT_TIME), and an interaction may last at most 31 days
(MAX_DURATION): a fixed range, never the wall clock, so that a replay or a backfill is decided
the same. (How far an event time may lie ahead of its record's broker timestamp is checked where
that timestamp is known: agents/record_processor.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Final = 1

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)  # excluded
MAX_DURATION = timedelta(days=31)  # of an interaction, and of each of its *_s durations
_NO_TIME = timedelta(0)

Channel = Literal["voice", "chat", "email", "messaging"]
NonEmptyId = Annotated[str, Field(min_length=1, max_length=200)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION.total_seconds())]
# (checked by pydantic's core, offsets included: no datetime arithmetic that could overflow)
EventTime = Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT_TIME, lt=LATEST_EVENT_TIME)]
# a checklist item name -> passed; as many items as a playbook could sensibly check
QaItems = Annotated[dict[NonEmptyId, bool], Field(max_length=200)]


class _Inbound(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)

    # The JSON integer 1 (strict: not true, not 1.0, which Literal[1] would take as equal)
    schema_version: Annotated[int, Field(ge=1, le=1, json_schema_extra={"const": 1})] = \
        SCHEMA_VERSION


class Interaction(_Inbound):
    """One finished contact (call, chat, email, message) handled by one employee."""

    event_id: NonEmptyId
    interaction_id: NonEmptyId
    employee_id: NonEmptyId
    team_id: NonEmptyId
    channel: Channel
    started_at: EventTime
    ended_at: EventTime
    wait_s: Seconds
    talk_s: Seconds
    hold_s: Seconds
    wrap_s: Seconds
    transfers: Annotated[int, Field(ge=0, le=1000)]
    resolved: bool | None = None
    qa: QaItems = Field(default_factory=dict)
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    nps: Annotated[int, Field(ge=0, le=10)] | None = None
    sentiment: Annotated[float, Field(ge=-1, le=1)] | None = None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Interaction:
        # both times are within the plausible range here: the subtraction cannot overflow
        span = self.ended_at - self.started_at
        if span < _NO_TIME:
            raise ValueError("ended_at is before started_at")
        if span > MAX_DURATION:
            raise ValueError(f"ended_at is more than {MAX_DURATION.days} days after started_at")
        return self


class LessonCompletion(_Inbound):
    """The learning system reports that an employee finished an assigned micro-lesson."""

    event_id: NonEmptyId
    assignment_id: NonEmptyId
    employee_id: NonEmptyId
    lesson_id: NonEmptyId | None = None
    completed_at: EventTime
    score: Annotated[float, Field(ge=0, le=100)] | None = None


class _Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    employee_id: str
    team_id: str
    playbook_version: str
    at: datetime = Field(description="event time of the interaction that caused the record")


class StandardResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: str
    outcome: Literal["pass", "fail", "not_applicable"]
    weight: float


class ExecutionScore(_Outbound):
    """The score of one interaction against the playbook (0-100, weighted share passed)."""

    event_id: str
    interaction_id: str
    channel: str
    score: float | None = Field(description="null when no standard applied")
    results: list[StandardResult]


class Evidence(BaseModel):
    """Why a decision was taken: the interactions and the statistic behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interaction_ids: list[str]
    statistic: str
    value: float | None = None
    threshold: float | None = None
    passes: int | None = None
    sample: int | None = None
    confidence: float | None = None
    # what the statistic's thresholds were designed for (test, error rates, horizon)
    design: dict[str, float | int | str | None] | None = None
    detail: str = ""


class PerformanceGap(_Outbound):
    """A gap on (employee, standard) opened, its lesson deferred (why not yet), or closed.
    (gap_id, status) is unique."""

    gap_id: str
    standard: str
    status: Literal["opened", "deferred", "closed"]
    target: float
    evidence: Evidence
    reason: str | None = Field(None, description="deferred: why the lesson waits "
                               "(max_open_lessons, cooldown); closed: standard_retired when "
                               "the playbook no longer has the standard")


AssignmentStatus = Literal["assigned", "completed", "expired", "superseded", "cancelled"]
ENDED_STATUSES = ("completed", "expired", "superseded", "cancelled")


class LessonAssignment(_Outbound):
    """A micro-lesson assigned to an employee because of a gap (status `assigned`), and how
    the assignment ended: each status is a record with the same assignment_id."""

    assignment_id: str
    lesson_id: str
    lesson_title: str
    standard: str
    gap_id: str
    due_at: datetime
    evidence: Evidence
    status: AssignmentStatus = "assigned"
    ended_at: datetime | None = Field(None, description="when it ended (event time)")
    completion_event_id: str | None = None
    reason: str | None = Field(None, description="cancelled: standard_retired when the "
                               "playbook no longer has the standard")


class LessonEffect(_Outbound):
    """One measurement of a gap's standard before and after a point: after its lesson was
    completed (group `lesson`), or in the same span after the gap opened with no completed
    lesson (group `comparison`). The difference in differences of the two groups per lesson
    is the lesson's effect."""

    effect_id: str
    gap_id: str
    assignment_id: str | None
    lesson_id: str
    standard: str
    group: Literal["lesson", "comparison"]
    window: int
    before_passes: int
    before_n: int
    after_passes: int
    after_n: int


class BonusAward(_Outbound):
    """Points awarded to an employee; redemption sites apply each award_id exactly once."""

    award_id: str
    rule: str
    points: int
    requested_points: int
    period: str = Field(description="the day (playbook time zone) the points count against")
    evidence: Evidence


OutputRecord = ExecutionScore | PerformanceGap | LessonAssignment | BonusAward | LessonEffect


def record_id(record: OutputRecord) -> str:
    """The deterministic id a consumer dedupes the record by."""
    if isinstance(record, ExecutionScore):
        return record.event_id
    if isinstance(record, PerformanceGap):
        return f"{record.gap_id}:{record.status}"
    if isinstance(record, LessonAssignment):
        if record.status == "assigned":
            return record.assignment_id
        return f"{record.assignment_id}:{record.status}"
    if isinstance(record, LessonEffect):
        return record.effect_id
    return record.award_id


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the contract, for documentation and for consumers."""
    models: list[type[BaseModel]] = [
        Interaction,
        LessonCompletion,
        ExecutionScore,
        PerformanceGap,
        LessonAssignment,
        BonusAward,
        LessonEffect,
    ]
    return {m.__name__: m.model_json_schema() for m in models}
