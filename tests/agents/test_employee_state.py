"""The employee state's changelog format: versioned, exact round trips (random states), tolerant
of missing and unknown fields, one clear error for anything else; and its dedupe memory."""

from __future__ import annotations

import json
import random
import string
import zlib
from datetime import timedelta

import pytest

from agents.decision_engine import DecisionEngine
from agents.employee_state import (
    FORMAT_VERSION,
    AssignmentState,
    EffectUnit,
    EmployeeState,
    SeenIds,
    StandardState,
    StateFormatError,
)
from agents.ids import digest

DAY = 86400.0
T = 1793577600.25  # 2026-11-02T00:00:00.25Z


# ---- random states ------------------------------------------------------------------------


def _name(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "_-. éü€"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def _time(rng: random.Random) -> float:
    return rng.choice([T + rng.uniform(-9 * DAY, 0), float(rng.randint(0, 2**33)), 0.0,
                       T + rng.randint(-100, 100) / 1000, -rng.uniform(0, 1e6)])


def _opt(rng: random.Random, make):
    return None if rng.random() < 0.4 else make()


def _outcomes(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("01") for _ in range(n))


def random_state(rng: random.Random) -> EmployeeState:
    seen = SeenIds()
    for _ in range(rng.choice([0, 1, 5, 60, 400])):
        seen.add(digest(_name(rng)), _time(rng))
    for _ in range(rng.choice([0, 0, 3])):
        seen.add_legacy(rng.randbytes(6), rng.randint(-5, 30000))
    standards = {}
    for _ in range(rng.randint(0, 10)):
        n = rng.randint(0, 55)
        ids = [_name(rng) for _ in range(n)]
        standards[_name(rng)] = StandardState(
            s=_opt(rng, lambda: rng.randint(-5, 500)), c=rng.choice([0, rng.randint(1, 900)]),
            scales=_opt(rng, lambda: f"{rng.uniform(1, 99):.6f}/{rng.uniform(1, 99):.6f}"),
            ids=ids, flags=_outcomes(rng, n),
            run_n=n + rng.choice([0, 0, rng.randint(1, 300), -1]),
            run_passes=rng.choice([0, rng.randint(0, 300)]),
            gap_id=_opt(rng, lambda: _name(rng)), gap_opened_at=_opt(rng, lambda: _time(rng)),
            gap_lesson_completed=rng.random() < 0.3, gap_assignments=rng.choice([0, 1, 7]),
            gap_deferred=rng.random() < 0.3, last_assigned_at=_opt(rng, lambda: _time(rng)),
            gap_target=_opt(rng, lambda: rng.choice([0.8, 0.95, 1.0, 0.0])))
    assignments = {}
    for _ in range(rng.randint(0, 6)):
        status = rng.choice(["assigned", "completed", "expired", "superseded", "cancelled",
                             "overdue?"])
        ended = None if status == "assigned" and rng.random() < 0.8 else _time(rng)
        completed = ended if status == "completed" and rng.random() < 0.7 else _opt(
            rng, lambda: _time(rng))
        assignments[_name(rng)] = AssignmentState(
            _name(rng), _name(rng), _name(rng), _time(rng), completed,
            _opt(rng, lambda: _time(rng)), status, ended)
    effects = {}
    for _ in range(rng.randint(0, 3)):
        effects[_name(rng)] = EffectUnit(
            _name(rng), _name(rng), _outcomes(rng, rng.randint(0, 40)), rng.randint(0, 80),
            _opt(rng, lambda: _name(rng)), _opt(rng, lambda: _outcomes(rng, 20)),
            _opt(rng, lambda: _outcomes(rng, rng.randint(0, 20))), rng.random() < 0.5)
    days = [f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(9)]
    if rng.random() < 0.2:
        days.append(_name(rng))  # not an ISO date: written as it is
    return EmployeeState(
        _name(rng), team_id=rng.choice(["", _name(rng)]), seen=seen,
        newest=rng.choice([0.0, _time(rng)]), pruned_at=rng.choice([0.0, _time(rng)]),
        standards=standards, assignments=assignments, effects=effects,
        scores=[round(rng.uniform(0, 100), 2) for _ in range(rng.randint(0, 20))],
        excellence_days=rng.sample(days, rng.randint(0, len(days))),
        points={d: rng.randint(0, 150) for d in rng.sample(days, rng.randint(0, len(days)))})


@pytest.mark.parametrize("seed", range(300))
def test_random_states_round_trip_exactly(seed):
    state = random_state(random.Random(seed))
    data = state.to_bytes()
    assert data[0] == FORMAT_VERSION == 2
    assert EmployeeState.from_bytes(data) == state
    assert EmployeeState.from_bytes(data).to_bytes() == data
    assert EmployeeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    copy = state.copy()
    assert copy == state


def test_a_copy_is_independent():
    state = random_state(random.Random(3))
    state.standards["x"] = StandardState(s=1, ids=["a"], flags="1", run_n=1, run_passes=1)
    state.assignments["a"] = AssignmentState("x", "l", "g", 1.0)
    state.effects["g"] = EffectUnit("x", "l")
    before = state.to_bytes()
    copy = state.copy()
    copy.standards["x"].ids.append("b")
    copy.standards["x"].flags += "0"
    copy.assignments["a"].status = "completed"
    copy.effects["g"].pre += "1"
    copy.seen.add(digest("new"), T)
    copy.scores.append(1.0)
    copy.points["2026-01-01"] = 5
    copy.excellence_days.append("2026-01-01")
    copy.standards["y"] = StandardState()
    assert state.to_bytes() == before


def test_a_busy_day_of_the_dedupe_memory_is_written_in_chunks():
    state = EmployeeState("emp-1")
    for i in range(70000):
        state.seen.add(i.to_bytes(4, "big"), T + i % 3600)
    assert EmployeeState.from_bytes(state.to_bytes()) == state


def test_the_version_comes_first_and_an_engine_state_round_trips(engine, interactions):
    state = EmployeeState("emp-1")
    for i in range(30):
        engine.on_interaction(state, interactions(fail=("empathy",) if i % 2 else (),
                                                  csat=5 if i % 3 == 0 else None))
    data = state.to_bytes()
    assert data[:1] == bytes([FORMAT_VERSION])
    assert EmployeeState.from_bytes(data) == state == state.copy()


# ---- tolerant decoding --------------------------------------------------------------------


def _v2(fields: dict, seen: bytes = b"\x00\x00\x00\x00") -> bytes:
    """Format 2 bytes with the given fields (as the format's JSON) and dedupe memory."""
    from agents.employee_state import _ZDICT

    deflate = zlib.compressobj(1, zlib.DEFLATED, -12, 4, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return b"\x02" + seen + deflate.compress(json.dumps(fields).encode()) + deflate.flush()


def test_format_2_needs_only_the_employee_id():
    state = EmployeeState.from_bytes(_v2({"e": "emp-1"}))
    assert state == EmployeeState("emp-1")


def test_format_2_ignores_unknown_fields_and_trailing_positions():
    state = EmployeeState.from_bytes(_v2({
        "e": "emp-1", "zz": {"from": "a newer version"},
        "s": {"empathy": [3, "1.000000/2.000000", 0, "1", ["i1"], 0, 0, "g", 5.5, 0, 1, 0,
                          6.5, 0.8, "a field from the future"]},
        "a": {"a1": ["empathy", "l", "g", 6.5, 9.5, 0, None, None, "future"]},
        "f": {"g": ["empathy", "l", "01", 2, None, None, None, 0, "future"]}}))
    st = state.standards["empathy"]
    assert (st.s, st.ids, st.run_n, st.gap_id, st.gap_target) == (3, ["i1"], 1, "g", 0.8)
    assert state.assignments["a1"] == AssignmentState("empathy", "l", "g", 6.5, due_at=9.5)
    assert state.effects["g"] == EffectUnit("empathy", "l", "01", 2)


def test_a_format_1_state_needs_only_the_employee_id():
    assert EmployeeState.from_bytes(b'{"e":"emp-1"}') == EmployeeState("emp-1")
    state = EmployeeState.from_bytes(json.dumps({
        "e": "emp-1", "unknown": 1, "std": {"empathy": {"g": "g1", "zz": 2}},
        "asg": {"a1": {"s": "empathy", "l": "l", "g": "g1", "a": 1.5}}}).encode())
    assert state.standards["empathy"] == StandardState(gap_id="g1")
    assert state.assignments["a1"] == AssignmentState("empathy", "l", "g1", 1.5)


def test_an_evidence_run_whose_ids_and_outcomes_differ_keeps_what_lines_up():
    st = StandardState.from_dict({"s": 4, "wi": ["a", "b", "c"], "wp": "01"})
    assert (st.ids, st.flags) == (["b", "c"], "01")


GARBAGE = [
    b"", b"\x00", b"\x02", b"\x02\x00", b"\x03" + b"\x00" * 20, b"\xff\xfe", b"{", b"{}",
    b"[1, 2]", b'"a string"', b'{"e": 5}', b'{"e": "emp-1", "std": []}',
    b'{"e": "emp-1", "std": {"x": {"s": "many"}}}',
    b'{"e": "emp-1", "asg": {"a": {"s": "x"}}}', b'{"e": "emp-1", "seen": {"zz": 5}}',
    b'{"e": "emp-1", "seen": {"12": "not base64!"}}', b'{"e": "emp-1", "pts": {"d": "x"}}',
    b'{"e": "emp-1", "sc": [true]}', b'{"e": "emp-1", "std": {"x": {"s": 1, "wp": "2"}}}',
    b"\x02\xff\xff\xff\xff", b"\x02\x01\x00\x00\x00\x05\x00\x00\x00\x09\x00",
    b"\x02\x00\x00\x00\x00not deflate",
    b"{" * 100000,
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_bytes_of_no_known_format_raise_one_clear_error(data):
    with pytest.raises(StateFormatError):
        EmployeeState.from_bytes(data)


@pytest.mark.parametrize("fields", [{"t": "x"}, {"e": 1}, {"e": "x", "s": {"a": "b"}},
                                    {"e": "x", "a": {"a": ["s", "l"]}},
                                    {"e": "x", "d": [739923]}, {"e": "x", "x": ["2026"]},
                                    {"e": "x", "a": {"a": ["s", "l", "g", 1, None, 9]}},
                                    {"e": "x", "f": {"g": ["s"]}}, {"e": "x", "c": "1"}])
def test_format_2_fields_of_the_wrong_shape_raise_one_clear_error(fields):
    with pytest.raises(StateFormatError):
        EmployeeState.from_bytes(_v2(fields))


def test_an_unknown_version_says_which_versions_are_read():
    with pytest.raises(StateFormatError, match="unknown format version 7; this version reads "
                                               "formats 1 and 2"):
        EmployeeState.from_bytes(b"\x07abc")


def test_damaged_states_raise_only_the_format_error():
    rng = random.Random(1)
    for seed in range(40):
        data = bytearray(random_state(random.Random(seed)).to_bytes())
        for cut in {1, 3, 5, len(data) // 2, len(data) - 1}:
            with pytest.raises(StateFormatError):
                EmployeeState.from_bytes(bytes(data[:cut]))
        for _ in range(20):
            damaged = bytearray(data)
            damaged[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            try:
                EmployeeState.from_bytes(bytes(damaged))
            except StateFormatError:
                pass


# ---- the dedupe memory --------------------------------------------------------------------


def test_an_id_is_found_at_its_own_event_time_only():
    seen = SeenIds()
    key = digest("evt-1")
    seen.add(key, T + 5 * 3600 + 12.5)
    assert seen.contains(key, T + 5 * 3600 + 12.5)
    assert seen.contains(key, T + 5 * 3600 + 3000)  # same day and hour: a replay's time
    assert not seen.contains(key, T + 6 * 3600)
    assert not seen.contains(key, T + DAY + 5 * 3600 + 12.5)
    assert not seen.contains(digest("evt-2"), T + 5 * 3600 + 12.5)
    seen.add(key, T + 5 * 3600 + 12.5)
    assert len(seen) == 1


def test_a_digest_migrated_without_a_time_matches_any_hour_of_its_day():
    seen = SeenIds()
    legacy = bytes.fromhex("64eaf2bb06a1")  # a 48-bit digest of a format-1 state
    seen.add_legacy(legacy, int(T // DAY))
    assert seen.contains(legacy[:4], T + 3600) and seen.contains(legacy[:4], T + 23 * 3600)
    assert not seen.contains(legacy[:4], T + DAY)


def test_pruning_forgets_by_the_hour():
    seen = SeenIds()
    for h in range(48):
        seen.add(digest(f"e{h}"), T + h * 3600)
    seen.forget_before(T + 30 * 3600 + 1800)  # hour 30 has not ended
    assert len(seen) == 48 - 30
    assert seen.oldest() == pytest.approx(T - 0.25 + 30 * 3600)
    assert not seen.contains(digest("e29"), T + 29 * 3600)
    assert seen.contains(digest("e30"), T + 30 * 3600)
    seen.forget_before(T + 100 * 3600)
    assert len(seen) == 0 and seen.oldest() is None and seen == SeenIds()


def test_at_50_a_day_the_memory_holds_the_horizon_and_about_an_hour(engine, interaction_factory):
    make = interaction_factory(step=timedelta(minutes=24 * 60 / 50))
    state = EmployeeState("emp-1")
    for _ in range(50 * 10):
        assert engine.on_interaction(state, make()).outcome == "processed"
    assert 350 <= len(state.seen) <= 350 + 2 * 3 + 1
    assert state.seen.oldest() >= state.newest - engine.horizon - 2 * 3600


def test_a_replay_at_the_horizon_edge_is_still_a_duplicate_after_a_round_trip(
        playbook, interaction_factory):
    engine = DecisionEngine(playbook)
    make = interaction_factory(step=timedelta(minutes=37))
    state = EmployeeState("emp-1")
    events = [make() for _ in range(400)]
    for ev in events:
        engine.on_interaction(state, ev)
        state = EmployeeState.from_bytes(state.to_bytes())
    for ev in events:
        if ev.ended_at.timestamp() >= state.newest - engine.horizon:
            assert engine.on_interaction(state, ev).outcome == "duplicate"
        else:  # past the horizon: refused, or still remembered within its hour
            decision = engine.on_interaction(state, ev)
            assert decision.outcome == "duplicate" or decision.code == "too_late"
