"""The contract: pydantic models of every record Frontline reads from or writes to a topic.

Inputs are validated strictly (wrong types are refused, not coerced); unknown extra fields are
ignored so that producers can add fields without breaking the pipeline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Channel = Literal["voice", "chat", "email", "messaging"]
NonEmptyId = Annotated[str, Field(min_length=1, max_length=200)]
Seconds = Annotated[float, Field(ge=0)]


class _Inbound(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    schema_version: Literal[1] = 1


class Interaction(_Inbound):
    """One finished contact (call, chat, email, message) handled by one employee."""

    event_id: NonEmptyId
    interaction_id: NonEmptyId
    employee_id: NonEmptyId
    team_id: NonEmptyId
    channel: Channel
    started_at: AwareDatetime
    ended_at: AwareDatetime
    wait_s: Seconds
    talk_s: Seconds
    hold_s: Seconds
    wrap_s: Seconds
    transfers: Annotated[int, Field(ge=0)]
    resolved: bool | None = None
    qa: dict[str, bool] = Field(default_factory=dict)
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    nps: Annotated[int, Field(ge=0, le=10)] | None = None
    sentiment: Annotated[float, Field(ge=-1, le=1)] | None = None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Interaction:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class LessonCompletion(_Inbound):
    """The learning system reports that an employee finished an assigned micro-lesson."""

    event_id: NonEmptyId
    assignment_id: NonEmptyId
    employee_id: NonEmptyId
    lesson_id: NonEmptyId | None = None
    completed_at: AwareDatetime
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
    detail: str = ""


class PerformanceGap(_Outbound):
    """A gap on (employee, standard) opened or closed. (gap_id, status) is unique."""

    gap_id: str
    standard: str
    status: Literal["opened", "closed"]
    target: float
    evidence: Evidence


class LessonAssignment(_Outbound):
    """A micro-lesson assigned to an employee because of a gap."""

    assignment_id: str
    lesson_id: str
    lesson_title: str
    standard: str
    gap_id: str
    due_at: datetime
    evidence: Evidence


class BonusAward(_Outbound):
    """Points awarded to an employee; redemption sites apply each award_id exactly once."""

    award_id: str
    rule: str
    points: int
    requested_points: int
    period: str = Field(description="the day (playbook time zone) the points count against")
    evidence: Evidence


OutputRecord = ExecutionScore | PerformanceGap | LessonAssignment | BonusAward


def record_id(record: OutputRecord) -> str:
    """The deterministic id a consumer dedupes the record by."""
    if isinstance(record, ExecutionScore):
        return record.event_id
    if isinstance(record, PerformanceGap):
        return f"{record.gap_id}:{record.status}"
    if isinstance(record, LessonAssignment):
        return record.assignment_id
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
    ]
    return {m.__name__: m.model_json_schema() for m in models}
