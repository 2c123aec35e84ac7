"""Scoring: not-applicable is never failed; the score is the weighted share passed (0-100)."""

from __future__ import annotations

import random

import pytest

from agents.scoring import FAIL, NOT_APPLICABLE, PASS, Judgement, Scorer

# Weights of the shipped playbook, written out so that a change to it is noticed here.
DEFAULT_WEIGHTS = {
    "greeting": 1.0, "verified_identity": 2.0, "empathy": 1.5, "accurate_info": 2.0,
    "offered_more_help": 0.5, "proper_closing": 1.0, "hold_time": 1.0,
    "customer_satisfaction": 1.5, "first_contact_resolution": 1.5,
}


def _outcomes(scorer, ev):
    return {j.standard: j.outcome for j in scorer.judge(ev)}


def test_all_pass_with_unknown_csat_and_resolution(playbook, interactions):
    scorer = Scorer(playbook)
    judgements = scorer.judge(interactions())
    assert [j.standard for j in judgements] == list(DEFAULT_WEIGHTS)  # playbook order
    assert {j.standard: j.weight for j in judgements} == DEFAULT_WEIGHTS
    outcomes = {j.standard: j.outcome for j in judgements}
    assert outcomes["customer_satisfaction"] == NOT_APPLICABLE
    assert outcomes["first_contact_resolution"] == NOT_APPLICABLE
    assert {o for s, o in outcomes.items()
            if s not in ("customer_satisfaction", "first_contact_resolution")} == {PASS}
    assert Scorer.score(judgements) == 100.0


def test_missing_qa_item_is_not_applicable_not_failed(playbook, interactions):
    qa = {"greeting": True, "empathy": False}
    outcomes = _outcomes(Scorer(playbook), interactions(qa=qa))
    assert outcomes["greeting"] == PASS
    assert outcomes["empathy"] == FAIL
    for item in ("verified_identity", "accurate_info", "offered_more_help", "proper_closing"):
        assert outcomes[item] == NOT_APPLICABLE


@pytest.mark.parametrize("csat,expected", [(None, NOT_APPLICABLE), (1, FAIL), (3, FAIL),
                                           (4, PASS), (5, PASS)])
def test_csat(playbook, interactions, csat, expected):
    assert _outcomes(Scorer(playbook), interactions(csat=csat))["customer_satisfaction"] \
        == expected


@pytest.mark.parametrize("resolved,expected", [(None, NOT_APPLICABLE), (False, FAIL),
                                               (True, PASS)])
def test_first_contact_resolution(playbook, interactions, resolved, expected):
    outcomes = _outcomes(Scorer(playbook), interactions(resolved=resolved))
    assert outcomes["first_contact_resolution"] == expected


@pytest.mark.parametrize("channel,hold_s,expected", [
    ("voice", 60, PASS), ("voice", 60.5, FAIL), ("chat", 0, PASS), ("chat", 300, FAIL),
    ("email", 300, NOT_APPLICABLE), ("email", 0, NOT_APPLICABLE),
    ("messaging", 300, NOT_APPLICABLE),
])
def test_hold_time_only_applies_to_voice_and_chat(playbook, interactions, channel, hold_s,
                                                  expected):
    outcomes = _outcomes(Scorer(playbook), interactions(channel=channel, hold_s=hold_s))
    assert outcomes["hold_time"] == expected


def test_weighted_score(playbook, interactions):
    scorer = Scorer(playbook)
    # Applicable: the six QA items and hold_time, weights 1+2+1.5+2+0.5+1+1 = 9.
    ev = interactions(fail=("empathy",))
    assert scorer.score(scorer.judge(ev)) == round(100 * 7.5 / 9, 2) == 83.33
    # Add csat 5 (1.5, pass) and resolved False (1.5, fail): 9 of 12 passed.
    ev = interactions(fail=("verified_identity",), csat=5, resolved=False)
    assert scorer.score(scorer.judge(ev)) == round(100 * (12 - 2 - 1.5) / 12, 2) == 70.83


def test_score_is_zero_when_everything_applicable_fails(playbook, interactions):
    scorer = Scorer(playbook)
    ev = interactions(fail=tuple(DEFAULT_WEIGHTS), csat=1, resolved=False, hold_s=61)
    judgements = scorer.judge(ev)
    assert {j.outcome for j in judgements} == {FAIL}
    assert scorer.score(judgements) == 0.0


def test_score_is_none_when_nothing_applies(playbook, interactions):
    scorer = Scorer(playbook)
    judgements = scorer.judge(interactions(qa={}, channel="email"))
    assert {j.outcome for j in judgements} == {NOT_APPLICABLE}
    assert scorer.score(judgements) is None
    assert Scorer.score([]) is None


def test_score_ignores_not_applicable_weights():
    judgements = [Judgement("a", PASS, 1.0), Judgement("b", FAIL, 3.0),
                  Judgement("c", NOT_APPLICABLE, 100.0)]
    assert Scorer.score(judgements) == 25.0


def test_score_is_between_0_and_100(playbook, interactions):
    scorer = Scorer(playbook)
    rng = random.Random(7)
    seen = set()
    for _ in range(300):
        qa = {k: rng.random() < 0.7 for k in DEFAULT_WEIGHTS if rng.random() < 0.8}
        ev = interactions(qa=qa, csat=rng.choice([None, 1, 2, 3, 4, 5]),
                          resolved=rng.choice([None, True, False]),
                          hold_s=rng.choice([0, 59, 61, 600]),
                          channel=rng.choice(["voice", "chat", "email", "messaging"]))
        score = scorer.score(scorer.judge(ev))
        assert score is None or 0.0 <= score <= 100.0
        seen.add(score)
    assert 0.0 in seen and 100.0 in seen and len(seen) > 20


@pytest.mark.parametrize("op,value,actual,expected", [
    ("le", 60, 59, PASS), ("le", 60, 60, PASS), ("le", 60, 61, FAIL),
    ("lt", 60, 59, PASS), ("lt", 60, 60, FAIL), ("lt", 60, 61, FAIL),
    ("ge", 60, 59, FAIL), ("ge", 60, 60, PASS), ("ge", 60, 61, PASS),
    ("gt", 60, 59, FAIL), ("gt", 60, 60, FAIL), ("gt", 60, 61, PASS),
    ("le", 0, 0, PASS), ("gt", 0, 0, FAIL),
])
def test_each_comparison_op(custom_playbook, interactions, op, value, actual, expected):
    pb = custom_playbook({"hold": {"check": {"field": "hold_s", "op": op, "value": value},
                                   "target": 0.8}})
    assert _outcomes(Scorer(pb), interactions(hold_s=actual)) == {"hold": expected}


@pytest.mark.parametrize("op,value,csat,expected", [
    ("ge", 4, None, NOT_APPLICABLE), ("ge", 4, 4, PASS), ("lt", 3, 2, PASS), ("gt", 3, 3, FAIL),
])
def test_comparison_on_missing_value_is_not_applicable(custom_playbook, interactions, op, value,
                                                       csat, expected):
    pb = custom_playbook({"csat": {"check": {"field": "csat", "op": op, "value": value},
                                   "target": 0.8}})
    assert _outcomes(Scorer(pb), interactions(csat=csat)) == {"csat": expected}


def test_channels_restriction_on_a_qa_standard(custom_playbook, interactions):
    pb = custom_playbook({"greeting": {"check": {"field": "qa.greeting"}, "target": 0.8,
                                       "channels": ["chat"]}})
    scorer = Scorer(pb)
    assert _outcomes(scorer, interactions(fail=("greeting",), channel="chat")) \
        == {"greeting": FAIL}
    assert _outcomes(scorer, interactions(fail=("greeting",), channel="voice")) \
        == {"greeting": NOT_APPLICABLE}
