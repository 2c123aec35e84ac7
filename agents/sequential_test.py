"""Gap evidence built for a pass rate that is looked at after every interaction: a pair of
Bernoulli CUSUM tests (Page 1954; Reynolds & Stoumbos 1999) on integer log-likelihood-ratio
steps, with thresholds derived exactly (a Markov chain over the integer statistic) from
error rates given in a manager's terms.

The opening test accumulates evidence that the pass rate has fallen from the target to
target - shortfall; it forgets evidence to the contrary (it never goes below 0), so it also
catches an employee who was fine and then slipped. Once a gap is open, the closing test
accumulates evidence of the opposite direction, so a gap neither lingers nor flaps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

# The larger of the two log-likelihood-ratio steps of a test, in integer units: fine enough
# that rounding moves the steps by a few per cent at most, coarse enough that the exact
# false-alarm computation over a few hundred states stays cheap.
STEP_UNITS = 40


@dataclass(frozen=True, slots=True)
class OneSidedCusum:
    """S <- max(0, S + up) on an outcome that points away from the null, S + down otherwise;
    an alarm when S >= threshold. Steps and threshold are integers (units of 1/scale)."""

    up: int
    down: int
    threshold: int
    scale: float
    # exact probability of an alarm within `horizon` looks from `start`, at the null
    false_alarm: float
    horizon: int
    start: int = 0

    def llr(self, s: int) -> float:
        """The statistic in natural log-likelihood-ratio units."""
        return round(s / self.scale, 4)


@dataclass(frozen=True, slots=True)
class GapDesign:
    """Both tests for one (target, shortfall) and what they were designed and computed for."""

    target: float
    alternative: float  # target - shortfall: the pass rate the opening test looks for
    recovered: float  # the pass rate the closing test looks for: clearly back above target
    opening: OneSidedCusum  # H0 rate = target, alarm = rate has fallen to `alternative`
    closing: OneSidedCusum  # H0 rate = alternative, alarm = rate is back at `recovered`
    false_gap_budget: float
    false_close_budget: float
    # at rate = alternative: chance of a gap within `horizon` looks and its median delay
    power: float
    median_delay: int | None

    def describe(self) -> str:
        delay = f"{self.median_delay}" if self.median_delay is not None else f"> {self.opening.horizon}"
        return (f"Bernoulli CUSUM, target {self.target:g} vs {self.alternative:g}: false gaps "
                f"{self.opening.false_alarm:.1%} of employees at target per {self.opening.horizon}"
                f" interactions (budget {self.false_gap_budget:.1%}); at {self.alternative:g} a "
                f"gap within {self.opening.horizon} in {self.power:.1%}, median after {delay}")


def _steps(p_null: float, p_alt: float) -> tuple[int, int, float]:
    """Integer steps (towards alarm, away from alarm) of the log-likelihood ratio of a fail
    under p_alt vs p_null, and the scale (integer units per natural log unit)."""
    fail = math.log((1 - p_alt) / (1 - p_null))
    passed = math.log(p_alt / p_null)
    if fail > 0:  # the alternative is a lower pass rate: fails point to the alarm
        toward, away = fail, passed
    else:  # the alternative is a higher pass rate: passes point to the alarm
        toward, away = passed, fail
    scale = STEP_UNITS / max(abs(toward), abs(away))
    return round(toward * scale), min(-1, round(away * scale)), scale


def run_length_cdf(up: int, down: int, threshold: int, p_up: float, looks: int,
                   start: int = 0) -> list[float]:
    """P(alarm at or before look n), n = 1..looks, for the integer CUSUM whose statistic
    moves by `up` (> 0) with probability `p_up` and by `down` (< 0) otherwise, floored at 0."""
    h, q = threshold, 1.0 - p_up
    probs = [0.0] * h
    probs[start] = 1.0
    alarmed = 0.0
    cdf: list[float] = []
    floor = 1 - down  # states 0 .. -down fall to 0 on a step down
    zeros_down = [0.0] * (h - 1 - max(0, h - floor))
    stays = max(0, h - up)  # states below this stay below the threshold on a step up
    zeros_up = [0.0] * (h - stays)
    for _ in range(looks):
        # a step down: states t <= -down land on 0, the others on t + down
        stepped_down = [q * sum(probs[:floor])] + [q * x for x in probs[floor:]] + zeros_down
        # a step up: states t < h - up land on t + up, the others alarm
        alarmed += p_up * sum(probs[stays:])
        stepped_up = zeros_up + [p_up * x for x in probs[:stays]]
        probs = [a + b for a, b in zip(stepped_down, stepped_up, strict=True)]
        cdf.append(alarmed)
    return cdf


def _calibrate(p_null: float, p_alt: float, budget: float, horizon: int,
               head_start: float = 0.0) -> OneSidedCusum:
    """The smallest threshold whose exact false-alarm probability within `horizon` looks,
    from the head start (a share of the threshold) at the null rate, is within `budget`."""
    up, down, scale = _steps(p_null, p_alt)
    p_up = (1 - p_null) if p_alt < p_null else p_null

    seen: dict[int, float] = {}

    def false_alarm(h: int) -> float:
        if h not in seen:
            seen[h] = run_length_cdf(up, down, h, p_up, horizon, start=int(h * head_start))[-1]
        return seen[h]

    lo, hi = up, up * 4
    while false_alarm(hi) > budget:
        lo, hi = hi, hi * 2
    # The log of the false-alarm probability falls almost linearly with the threshold: guess
    # by interpolating it, and halve the bracket whenever a guess did not shrink it enough.
    target = math.log(budget)
    while hi - lo > 1:  # false_alarm(lo) > budget >= false_alarm(hi)
        f_lo, f_hi = math.log(false_alarm(lo)), math.log(max(false_alarm(hi), 1e-300))
        guess = lo + round((f_lo - target) / (f_lo - f_hi) * (hi - lo))
        guess = min(max(guess, lo + 1), hi - 1)
        width = hi - lo
        for mid in (guess, (lo + hi) // 2):
            if false_alarm(mid) > budget:
                lo = mid
            else:
                hi = mid
            if hi - lo <= width // 2 or hi - lo <= 1:
                break
    return OneSidedCusum(up, down, hi, scale, false_alarm(hi), horizon, int(hi * head_start))


# A new (employee, standard) starts the opening test half-way to its threshold (Lucas &
# Crosier's fast initial response): with no history there is nothing to vouch for the
# employee, so a real shortfall is caught within a few dozen interactions. The threshold is
# calibrated with the head start included, so the false-gap budget still holds.
HEAD_START = 0.5


@lru_cache(maxsize=256)
def design_gap_tests(target: float, shortfall: float, false_gap_rate: float,
                     false_close_rate: float, horizon: int) -> GapDesign:
    """Derive both tests from the manager's terms: the shortfall that matters, the share of
    employees exactly at target allowed a (false) gap per `horizon` applicable interactions,
    and the share of employees truly `shortfall` below target allowed a (false) close per
    `horizon` interactions of an open gap."""
    alternative = round(target - shortfall, 6)
    if not 0 < alternative < target < 1:
        raise ValueError(f"target {target:g} - shortfall {shortfall:g} must stay above 0")
    recovered = round(min(target + shortfall / 3, 1 - (1 - target) / 2), 6)
    opening = _calibrate(target, alternative, false_gap_rate, horizon, HEAD_START)
    closing = _calibrate(alternative, recovered, false_close_rate, horizon)
    cdf = run_length_cdf(opening.up, opening.down, opening.threshold, 1 - alternative, horizon,
                         start=opening.start)
    median = next((n + 1 for n, c in enumerate(cdf) if c >= 0.5), None)
    return GapDesign(target, alternative, recovered, opening, closing, false_gap_rate,
                     false_close_rate,
                     power=cdf[-1], median_delay=median)
