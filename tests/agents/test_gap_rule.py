"""The sequential gap tests: exact error rates by construction, and the statistical promises
checked on simulated employees with known true pass rates (fixed seeds, honest margins)."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from agents.employee_state import StandardState
from agents.gap_rule import GapRule
from agents.sequential_test import design_gap_tests, run_length_cdf
from models.playbook import load_playbook


def _brute_force(up: int, down: int, h: int, p_up: float, looks: int, start: int) -> float:
    """P(alarm within `looks`) by enumerating every outcome sequence."""
    total = 0.0
    for seq in itertools.product((True, False), repeat=looks):
        s, prob, alarmed = start, 1.0, False
        for towards in seq:
            prob *= p_up if towards else 1 - p_up
            s = max(0, s + (up if towards else down))
            alarmed = alarmed or s >= h
        total += prob if alarmed else 0.0
    return total


@pytest.mark.parametrize("up,down,h,p,start", [(40, -15, 120, 0.2, 0), (40, -8, 100, 0.1, 50),
                                               (15, -40, 90, 0.8, 0)])
def test_run_length_distribution_is_exact(up, down, h, p, start):
    cdf = run_length_cdf(up, down, h, p, 12, start=start)
    assert cdf[-1] == pytest.approx(_brute_force(up, down, h, p, 12, start), abs=1e-12)
    assert cdf == sorted(cdf)


@pytest.mark.parametrize("target", [0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
def test_thresholds_are_the_smallest_within_the_budget(target):
    d = design_gap_tests(target, 0.15, 0.045, 0.01, 200)
    o = d.opening
    assert o.false_alarm <= 0.045
    tighter = run_length_cdf(o.up, o.down, o.threshold - 1, 1 - target, 200,
                             start=int((o.threshold - 1) * 0.5))[-1]
    assert tighter > 0.045
    c = d.closing
    assert c.false_alarm <= 0.01
    assert run_length_cdf(c.up, c.down, c.threshold - 1, d.alternative, 200)[-1] > 0.01
    assert d.alternative == pytest.approx(target - 0.15)
    assert target < d.recovered <= min(target + 0.05, 1 - (1 - target) / 2) + 1e-9


def test_design_follows_the_playbook_with_a_per_standard_shortfall():
    pb = load_playbook()
    rule = GapRule.for_standard(pb, "empathy")
    assert (rule.design.target, rule.design.alternative) == (0.8, 0.65)
    stricter = pb.model_copy(update={"standards": {
        **pb.standards, "empathy": pb.standards["empathy"].model_copy(update={"shortfall": 0.1})}})
    assert GapRule.for_standard(stricter, "empathy").design.alternative == pytest.approx(0.7)


# ---- simulated employees --------------------------------------------------------------------


def _run(rule: GapRule, rates: list[float], rng: random.Random) -> list[tuple[int, str]]:
    """Feed outcomes drawn from `rates` (one per interaction); the gap changes (index, kind)."""
    st, changes = StandardState(), []
    for i, p in enumerate(rates):
        change = rule.observe(st, f"i{i}", rng.random() < p)
        if change is not None:
            st.gap_id = "gap" if change == "opened" else None
            GapRule.reset(st)
            changes.append((i + 1, change))
    return changes


def _rule(target: float) -> GapRule:
    return GapRule(design_gap_tests(target, 0.15, 0.045, 0.01, 200))


@pytest.mark.parametrize("target", [0.7, 0.8, 0.95])
def test_false_gaps_at_and_above_target(target):
    rng, rule = random.Random(11), _rule(target)
    at = [_run(rule, [target] * 200, rng) for _ in range(1000)]
    above = [_run(rule, [min(target + 0.05, 0.99)] * 200, rng) for _ in range(1000)]
    assert sum(1 for c in at if c) / 1000 <= 0.06
    assert sum(1 for c in above if c) / 1000 <= 0.015


def test_employees_clearly_below_target_are_caught_within_a_few_dozen():
    rng, rule = random.Random(12), _rule(0.8)
    first = [next((i for i, k in _run(rule, [0.65] * 200, rng) if k == "opened"), 999)
             for _ in range(1000)]
    assert sum(1 for i in first if i <= 100) / 1000 >= 0.83
    assert statistics.median(first) <= 55


def test_a_drop_mid_stream_is_detected():
    rng, rule = random.Random(13), _rule(0.8)
    delays = []
    for _ in range(500):
        changes = _run(rule, [0.85] * 100 + [0.60] * 200, rng)
        delays.append(next((i - 100 for i, k in changes if k == "opened" and i > 100), 999))
    assert statistics.median(delays) <= 60


def test_a_recovery_closes_the_gap_and_it_stays_closed():
    rng, rule = random.Random(14), _rule(0.8)
    delays, reopened, n = [], 0, 0
    for _ in range(500):
        changes = _run(rule, [0.60] * 100 + [0.90] * 200, rng)
        open_at_change = [k for i, k in changes if i <= 100][-1:] == ["opened"]
        if not open_at_change:
            continue
        n += 1
        close = next((i for i, k in changes if k == "closed" and i > 100), None)
        delays.append(close - 100 if close is not None else 999)
        if close is not None and any(k == "opened" and i > close for i, k in changes):
            reopened += 1
    assert n > 450
    assert statistics.median(delays) <= 42
    assert reopened / n <= 0.02


def test_a_playbook_change_keeps_the_evidence_in_log_likelihood_units():
    before, after = _rule(0.8), GapRule(design_gap_tests(0.8, 0.10, 0.045, 0.01, 200))
    st = StandardState()
    for i in range(3):
        assert before.observe(st, f"i{i}", False) is None
    s_before = st.s
    assert st.scales == before.scales and s_before is not None
    after.observe(st, "i3", True)  # the new playbook's first outcome: rescale, then step
    assert st.scales == after.scales != before.scales
    rescaled = round(s_before * after.opening.scale / float(before.scales.split("/")[0]))
    assert st.s == rescaled + after.opening.down
    assert after.opening.llr(rescaled) == pytest.approx(before.opening.llr(s_before), abs=0.02)
    assert StandardState.from_dict(st.to_dict()) == st
