"""The topics of the contract, by their default names, and which record type each carries."""

from __future__ import annotations

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
