"""Wilson bounds against independently computed reference values, and the gap thresholds."""

from __future__ import annotations

import itertools
import math

import pytest

from agents.evidence import Bounds, GapRule, wilson_bounds
from models.playbook import EvidencePolicy

Z95 = 1.645


def outcome_bounds(rule: GapRule, outcomes: list[bool]) -> Bounds:
    return rule.bounds(sum(outcomes), len(outcomes))


def reference_wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """Textbook Wilson score interval, in counts: (x + z²/2 ± z·√(x(n-x)/n + z²/4)) / (n + z²)."""
    centre = x + z * z / 2
    spread = z * math.sqrt(x * (n - x) / n + z * z / 4)
    return (centre - spread) / (n + z * z), (centre + spread) / (n + z * z)


# Hand-checked values at z = 1.645 (e.g. 0/10: upper = z²/(n + z²) = 2.706025/12.706025).
KNOWN = [
    (0, 10, 0.0, 0.212972),
    (5, 10, 0.269256, 0.730744),
    (10, 10, 0.787028, 1.0),
    (4, 10, 0.194214, 0.648380),
    (17, 20, 0.678154, 0.938422),
]


@pytest.mark.parametrize("x,n,lower,upper", KNOWN)
def test_known_values(x, n, lower, upper):
    b = wilson_bounds(x, n, Z95)
    assert (b.passes, b.sample) == (x, n)
    assert b.lower == pytest.approx(lower, abs=1e-6)
    assert b.upper == pytest.approx(upper, abs=1e-6)


def test_known_values_match_the_textbook_formula():
    for x, n, lower, upper in KNOWN:
        ref = reference_wilson(x, n, Z95)
        assert ref == pytest.approx((lower, upper), abs=1e-6)
    assert Z95 * Z95 / (10 + Z95 * Z95) == pytest.approx(0.212972, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 37, 100, 500])
@pytest.mark.parametrize("z", [1.0, 1.645, 2.326])
def test_matches_reference_for_every_count(n, z):
    for x in range(n + 1):
        b = wilson_bounds(x, n, z)
        lo, hi = reference_wilson(x, n, z)
        assert b.lower == pytest.approx(max(0.0, lo), abs=1e-12)
        assert b.upper == pytest.approx(min(1.0, hi), abs=1e-12)


@pytest.mark.parametrize("n", [1, 3, 10, 20, 50])
def test_bounds_in_unit_interval_and_straddle_the_rate(n):
    for x in range(n + 1):
        b = wilson_bounds(x, n, Z95)
        assert 0.0 <= b.lower <= 1.0 and 0.0 <= b.upper <= 1.0
        # the rate lies inside (up to float rounding: n/n gives an upper of 1 - 1 ulp)
        assert b.lower - 1e-12 <= b.rate <= b.upper + 1e-12
        assert b.rate == x / n


def test_monotonic_in_passes():
    for n in (5, 10, 20):
        bounds = [wilson_bounds(x, n, Z95) for x in range(n + 1)]
        for a, b in itertools.pairwise(bounds):
            assert b.lower > a.lower
            assert b.upper > a.upper or b.upper == 1.0


def test_more_evidence_narrows_the_interval():
    widths = [wilson_bounds(n // 2, n, Z95) for n in (10, 20, 40, 80, 160)]
    for a, b in itertools.pairwise(widths):
        assert b.upper - b.lower < a.upper - a.lower


def test_higher_confidence_widens_the_interval():
    narrow, wide = wilson_bounds(6, 10, 1.282), wilson_bounds(6, 10, 2.326)
    assert wide.lower < narrow.lower and wide.upper > narrow.upper


def test_empty_sample_is_uninformative():
    b = wilson_bounds(0, 0, Z95)
    assert (b.passes, b.sample, b.lower, b.upper, b.rate) == (0, 0, 0.0, 1.0, 0.0)


# ---- GapRule --------------------------------------------------------------------------------


@pytest.fixture
def rule() -> GapRule:
    return GapRule(EvidencePolicy(window=20, min_sample=10, confidence=0.95, close_margin=0.15))


def test_rule_takes_the_policy(rule):
    assert (rule.window, rule.min_sample, rule.confidence, rule.close_margin) == \
        (20, 10, 0.95, 0.15)
    assert rule.z == pytest.approx(1.6449, abs=1e-4)


def test_rule_bounds_count_the_outcomes(rule):
    b = outcome_bounds(rule, [True, False, True, True])
    assert (b.passes, b.sample) == (3, 4)
    assert (b.lower, b.upper) == pytest.approx(reference_wilson(3, 4, rule.z))


def test_open_needs_min_sample(rule):
    assert not rule.should_open(outcome_bounds(rule, [False] * 9), 0.8)
    assert rule.should_open(outcome_bounds(rule, [False] * 10), 0.8)


def test_open_needs_upper_bound_strictly_below_target(rule):
    assert rule.should_open(Bounds(4, 10, 0.19, 0.6483), 0.65)
    assert not rule.should_open(Bounds(4, 10, 0.19, 0.65), 0.65)
    assert not rule.should_open(Bounds(4, 10, 0.19, 0.66), 0.65)


def test_open_with_real_counts(rule):
    # 4/10 has upper bound 0.648: below the 0.8 target, not below a 0.6 target.
    b = outcome_bounds(rule, [True] * 4 + [False] * 6)
    assert rule.should_open(b, 0.8)
    assert not rule.should_open(b, 0.6)
    # 17/20 (upper 0.938) does not open a 0.9 target; 15/20 (upper 0.873) does.
    assert not rule.should_open(outcome_bounds(rule, [True] * 17 + [False] * 3), 0.9)
    assert rule.should_open(outcome_bounds(rule, [True] * 15 + [False] * 5), 0.9)


def test_close_needs_lower_bound_at_target_minus_margin(rule):
    assert rule.should_close(Bounds(18, 20, 0.65, 0.98), 0.8)
    assert not rule.should_close(Bounds(18, 20, 0.6499, 0.98), 0.8)
    assert not rule.should_close(Bounds(9, 9, 0.9, 1.0), 0.8)  # below min_sample


def test_close_with_real_counts(rule):
    # target 0.8 - 0.15 = 0.65: 17/20 (lower 0.678) closes, 16/20 (lower 0.622) does not.
    assert rule.should_close(outcome_bounds(rule, [True] * 17 + [False] * 3), 0.8)
    assert not rule.should_close(outcome_bounds(rule, [True] * 16 + [False] * 4), 0.8)


def test_open_and_close_never_both_true(rule):
    for n in range(1, 21):
        for x in range(n + 1):
            b = outcome_bounds(rule, [True] * x + [False] * (n - x))
            for target in (0.5, 0.7, 0.8, 0.9, 0.95):
                assert not (rule.should_open(b, target) and rule.should_close(b, target))
