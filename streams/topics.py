"""The topics of the contract, by their default names, and which record type each carries."""

from __future__ import annotations

from typing import Any

from models.events import (
    BonusAward,
    ExecutionScore,
    LessonAssignment,
    LessonEffect,
    OutputRecord,
    PerformanceGap,
)

INTERACTIONS = "interactions"
LESSON_COMPLETIONS = "lesson-completions"
EXECUTION_SCORES = "execution-scores"
PERFORMANCE_GAPS = "performance-gaps"
LESSON_ASSIGNMENTS = "lesson-assignments"
BONUS_AWARDS = "bonus-awards"
LESSON_EFFECTS = "lesson-effects"
DEAD_LETTERS = "dead-letters"

INPUTS = (INTERACTIONS, LESSON_COMPLETIONS)
OUTPUTS = (EXECUTION_SCORES, PERFORMANCE_GAPS, LESSON_ASSIGNMENTS, BONUS_AWARDS, LESSON_EFFECTS,
           DEAD_LETTERS)
ALL = INPUTS + OUTPUTS

_TOPIC_OF: dict[type, str] = {
    ExecutionScore: EXECUTION_SCORES,
    PerformanceGap: PERFORMANCE_GAPS,
    LessonAssignment: LESSON_ASSIGNMENTS,
    BonusAward: BONUS_AWARDS,
    LessonEffect: LESSON_EFFECTS,
}


def topic_of(record: OutputRecord) -> str:
    """The contract topic an output record is published to."""
    return _TOPIC_OF[type(record)]


# output topic -> the field a record is deduplicated by, where it is a single field
_ID_FIELD = {EXECUTION_SCORES: "event_id", BONUS_AWARDS: "award_id", LESSON_EFFECTS: "effect_id"}


def record_key(topic: str, record: dict[str, Any]) -> str:
    """models.events.record_id of an output record read as JSON from its contract topic: a
    gap's id and status; an assignment's id when assigned, id:status for how it ended."""
    if topic == PERFORMANCE_GAPS:
        return f"{record['gap_id']}:{record['status']}"
    if topic == LESSON_ASSIGNMENTS:
        status = record.get("status", "assigned")
        assignment_id = str(record["assignment_id"])
        return assignment_id if status == "assigned" else f"{assignment_id}:{status}"
    return str(record[_ID_FIELD[topic]])
