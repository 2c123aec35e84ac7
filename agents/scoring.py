"""Execution scoring: judge one interaction against every standard of the playbook.

A standard the interaction gives no data for (no survey, no QA item, other channel) is
"not applicable", never failed. The score is the weighted share of applicable standards passed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from models.events import Interaction
from models.playbook import Check, Playbook

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "not_applicable"

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "le": operator.le,
    "ge": operator.ge,
    "lt": operator.lt,
    "gt": operator.gt,
}


@dataclass(frozen=True, slots=True)
class Judgement:
    standard: str
    outcome: str  # PASS, FAIL or NOT_APPLICABLE
    weight: float


def _judge(check: Check) -> Callable[[Interaction], bool | None]:
    """Compile a check into a function returning pass/fail, or None when not applicable."""
    if check.field.startswith("qa."):
        item = check.field[3:]
        return lambda ev: ev.qa.get(item)
    if check.op == "is_true":
        name = check.field
        return lambda ev: getattr(ev, name)
    name, compare, limit = check.field, _COMPARE[check.op], float(check.value or 0.0)

    def judge(ev: Interaction) -> bool | None:
        value = getattr(ev, name)
        return None if value is None else compare(value, limit)

    return judge


class Scorer:
    """Scores interactions against one playbook; build once, call per interaction."""

    def __init__(self, playbook: Playbook) -> None:
        self._standards = [
            (name, std.weight, frozenset(std.channels) if std.channels else None, _judge(std.check))
            for name, std in playbook.standards.items()
        ]

    def judge(self, ev: Interaction) -> list[Judgement]:
        out = []
        for name, weight, channels, judge in self._standards:
            verdict = None if channels is not None and ev.channel not in channels else judge(ev)
            outcome = NOT_APPLICABLE if verdict is None else (PASS if verdict else FAIL)
            out.append(Judgement(name, outcome, weight))
        return out

    @staticmethod
    def score(judgements: list[Judgement]) -> float | None:
        """Weighted share of applicable standards passed, 0-100; None if none applied."""
        total = passed = 0.0
        for j in judgements:
            if j.outcome != NOT_APPLICABLE:
                total += j.weight
                if j.outcome == PASS:
                    passed += j.weight
        return None if total == 0 else round(100.0 * passed / total, 2)
