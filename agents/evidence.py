"""Evidence statistics: Wilson score bounds on a pass rate over a rolling window."""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.playbook import EvidencePolicy, one_sided_z


@dataclass(frozen=True, slots=True)
class Bounds:
    passes: int
    sample: int
    lower: float
    upper: float

    @property
    def rate(self) -> float:
        return self.passes / self.sample if self.sample else 0.0


def wilson_bounds(passes: int, sample: int, z: float) -> Bounds:
    """Wilson score interval for `passes` successes out of `sample` trials."""
    if sample == 0:
        return Bounds(0, 0, 0.0, 1.0)
    p = passes / sample
    z2 = z * z
    denom = 1 + z2 / sample
    centre = (p + z2 / (2 * sample)) / denom
    half = z * math.sqrt(p * (1 - p) / sample + z2 / (4 * sample * sample)) / denom
    return Bounds(passes, sample, max(0.0, centre - half), min(1.0, centre + half))


class GapRule:
    """When evidence is convincing enough to open a gap, and when it shows recovery."""

    def __init__(self, policy: EvidencePolicy) -> None:
        self.window = policy.window
        self.min_sample = policy.min_sample
        self.confidence = policy.confidence
        self.close_margin = policy.close_margin
        self.z = one_sided_z(policy.confidence)

    def bounds(self, passes: int, sample: int) -> Bounds:
        return wilson_bounds(passes, sample, self.z)

    def should_open(self, b: Bounds, target: float) -> bool:
        """Open only with a minimum sample and the upper bound below target."""
        return b.sample >= self.min_sample and b.upper < target

    def should_close(self, b: Bounds, target: float) -> bool:
        """Close (hysteresis) once the lower bound reaches target minus the margin."""
        return b.sample >= self.min_sample and b.lower >= target - self.close_margin
