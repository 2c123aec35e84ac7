"""Lesson effect: fixed measurement windows the gap decision did not choose, a comparison group
of gaps with no completed lesson, and a difference in differences that tells the truth."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.lesson_effect import Measurement, estimate
from models.events import LessonAssignment, LessonEffect


def _effects(records) -> list[LessonEffect]:
    return [r for r in records if isinstance(r, LessonEffect)]


def test_difference_in_differences_by_hand():
    ms = [Measurement("lesson", 10, 20, 16, 20), Measurement("lesson", 12, 20, 14, 20),
          Measurement("comparison", 10, 20, 11, 20), Measurement("comparison", 10, 20, 9, 20),
          Measurement("lesson", 1, 2, 5, 20)]  # too little "before": not used
    e = estimate(ms)
    assert (e.n_lesson, e.n_comparison) == (2, 2)
    assert e.lesson_change == pytest.approx(0.2)  # (0.3 + 0.1) / 2
    assert e.comparison_change == pytest.approx(0.0)
    assert e.effect == pytest.approx(0.2)
    # Welch: var(lesson changes)/2 + var(comparison changes)/2 = 0.02/2 + 0.005/2
    half = 1.959964 * (0.02 / 2 + 0.005 / 2) ** 0.5
    assert (e.ci_low, e.ci_high) == (pytest.approx(0.2 - half, abs=1e-5),
                                     pytest.approx(0.2 + half, abs=1e-5))
    assert estimate([Measurement("lesson", 1, 10, 5, 10)]).ci_low is None


def test_windows_of_a_completed_lesson_and_of_a_comparison_gap(engine, interaction_factory,
                                                               completion):
    w = engine.playbook.evidence.effect_window
    # emp-1 completes the lesson after 7 more applicable interactions
    state, make = EmployeeState("emp-1"), interaction_factory("emp-1")
    records = [r for ev in make.pattern("FFFFFF", "empathy")
               for r in engine.on_interaction(state, ev).records]
    (a,) = [r for r in records if isinstance(r, LessonAssignment)]
    pre = "PFPFFPF"
    for ev in make.pattern(pre, "empathy"):
        engine.on_interaction(state, ev)
    engine.on_completion(state, completion(a.assignment_id, make.clock + timedelta(minutes=1)))
    post = "PPPPFPPPPPPPFPPPPPPP"
    out = _effects(r for ev in make.pattern(post, "empathy")
                   for r in engine.on_interaction(state, ev).records)
    (m,) = out
    assert (m.group, m.gap_id, m.assignment_id, m.lesson_id, m.window) == \
        ("lesson", a.gap_id, a.assignment_id, "empathy-statements", w)
    assert (m.before_passes, m.before_n) == (pre.count("P"), len(pre))
    assert (m.after_passes, m.after_n) == (post.count("P"), w)
    assert not state.effects  # measured once, then forgotten

    # emp-2 never completes: the first and second window after the opening compare
    state2, make2 = EmployeeState("emp-2"), interaction_factory("emp-2")
    pattern = "FFFFFF" + "PFFPF" * 8
    out2 = _effects(r for ev in make2.pattern(pattern, "empathy")
                    for r in engine.on_interaction(state2, ev).records)
    (c,) = out2
    after_open = pattern[6:6 + 2 * w]
    assert c.group == "comparison"
    assert (c.before_passes, c.before_n) == (after_open[:w].count("P"), w)
    assert (c.after_passes, c.after_n) == (after_open[w:].count("P"), w)


def _simulate(engine: DecisionEngine, lift: float, employees: int, seed: int,
              complete_p: float = 0.5) -> list[Measurement]:
    """Employees at 0.60 on empathy (target 0.80); a share `complete_p` complete the lesson
    10-40 interactions after it is assigned, after which their true rate is 0.60 + lift."""
    from tests.agents.conftest import InteractionFactory, make_completion

    rng = random.Random(seed)
    out: list[Measurement] = []
    for e in range(employees):
        eid = f"emp-{e}"
        state, make, p = EmployeeState(eid), InteractionFactory(eid), 0.60
        due: dict[int, str] = {}
        for i in range(260):
            if i in due:
                d = engine.on_completion(state, make_completion(
                    due.pop(i), make.clock + timedelta(minutes=1), employee_id=eid))
                if d.outcome == "processed":
                    p = 0.60 + lift
            passed = rng.random() < p
            for r in engine.on_interaction(state, make(qa={"empathy": passed},
                                                       channel="email")).records:
                if isinstance(r, LessonAssignment) and r.status == "assigned" \
                        and rng.random() < complete_p:
                    due[i + rng.randint(10, 40)] = r.assignment_id
                elif isinstance(r, LessonEffect):
                    out.append(Measurement(r.group, r.before_passes, r.before_n,
                                           r.after_passes, r.after_n))
    return out


@pytest.mark.parametrize("lift", [0.15, 0.0])
def test_the_estimate_tells_the_truth(engine, lift):
    e = estimate(_simulate(engine, lift, employees=300, seed=21))
    assert e.n_lesson > 100 and e.n_comparison > 100
    assert e.effect == pytest.approx(lift, abs=0.04)
    assert e.ci_low is not None and e.ci_high is not None
    assert e.ci_low <= lift <= e.ci_high
