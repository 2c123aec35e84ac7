"""A lesson's effect: difference in differences of pass rates between gaps whose lesson was
completed and gaps of the same kind with no completed lesson, with a 95 % interval.

Each measurement compares two fixed windows that the gap decision did not choose: for a
completed lesson, the applicable interactions between the gap opening and the completion
(the last `window` of them) against the `window` after the completion; for a comparison gap,
the first `window` interactions after the opening against the next `window`. Both groups share
whatever the opening itself does to later outcomes (notice, regression), so it cancels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist, fmean, variance

Z95 = NormalDist().inv_cdf(0.975)
# A measurement with fewer outcomes than this on either side says too little to use.
MIN_WINDOW = 5


@dataclass(frozen=True, slots=True)
class Measurement:
    group: str  # "lesson" | "comparison"
    before_passes: int
    before_n: int
    after_passes: int
    after_n: int

    @property
    def usable(self) -> bool:
        return self.before_n >= MIN_WINDOW and self.after_n >= MIN_WINDOW

    @property
    def change(self) -> float:
        return self.after_passes / self.after_n - self.before_passes / self.before_n


@dataclass(frozen=True, slots=True)
class EffectEstimate:
    n_lesson: int
    n_comparison: int
    lesson_change: float | None  # mean after - before, completed lessons
    comparison_change: float | None  # the same for the comparison gaps
    effect: float | None  # difference in differences
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in (("n_lesson", self.n_lesson), ("n_comparison", self.n_comparison),
                             ("lesson_change", self.lesson_change),
                             ("comparison_change", self.comparison_change),
                             ("effect", self.effect), ("ci_low", self.ci_low),
                             ("ci_high", self.ci_high))}


def _mean_var(changes: list[float]) -> tuple[float | None, float | None]:
    if not changes:
        return None, None
    m = fmean(changes)
    return m, (variance(changes) / len(changes) if len(changes) > 1 else None)


def estimate(measurements: Iterable[Measurement]) -> EffectEstimate:
    """Difference in differences with a normal 95 % interval from the two groups' sampling
    variances (Welch); no interval when either group has fewer than two usable measurements."""
    items = list(measurements)
    lesson = [m.change for m in items if m.usable and m.group == "lesson"]
    comparison = [m.change for m in items if m.usable and m.group == "comparison"]
    lm, lv = _mean_var(lesson)
    cm, cv = _mean_var(comparison)
    effect = lm - cm if lm is not None and cm is not None else None
    low = high = None
    if effect is not None and lv is not None and cv is not None:
        half = Z95 * math.sqrt(lv + cv)
        low, high = effect - half, effect + half
    return EffectEstimate(len(lesson), len(comparison), lm, cm, effect, low, high)
