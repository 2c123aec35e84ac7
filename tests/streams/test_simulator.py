"""The traffic simulator without a broker: determinism, the contract, shares, event time, weak
employees, the learning loop and the truth it knows (true pass rates over event time)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from models.events import Evidence, Interaction, LessonAssignment, LessonCompletion
from models.playbook import load_playbook
from streams.demo import judge_gaps
from streams.simulator import (
    CUSTOMER_SATISFACTION,
    FIRST_CONTACT_RESOLUTION,
    HOLD_TIME,
    QA_ITEMS,
    TRAITS,
    SimRecord,
    Simulator,
    SimulatorConfig,
)

SAMPLE = 20_000


@pytest.fixture(scope="module")
def run() -> tuple[Simulator, list[SimRecord]]:
    """One simulator with the default config and its first SAMPLE records."""
    sim = Simulator(SimulatorConfig())
    return sim, [sim.next_record() for _ in range(SAMPLE)]


@pytest.fixture(scope="module")
def interactions(run: tuple[Simulator, list[SimRecord]]) -> list[Interaction]:
    """The valid interaction records of the run, parsed by the contract, in delivery order."""
    return [Interaction.model_validate_json(r.value) for r in run[1] if r.kind == "valid"]


def _assignment(employee_id: str, standard: str, at: datetime, n: int) -> bytes:
    assignment = LessonAssignment(
        employee_id=employee_id, team_id="team-01", playbook_version="2026.11.1", at=at,
        assignment_id=f"asg-{n}", lesson_id=f"lesson-{standard}", lesson_title="A lesson",
        standard=standard, gap_id=f"gap-{n}", due_at=at + timedelta(days=3),
        evidence=Evidence(interaction_ids=["int-7-1"], statistic="wilson_upper"))
    return assignment.model_dump_json().encode()


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def first(seed: int) -> list[tuple[str, bytes, bytes, str]]:
        sim = Simulator(SimulatorConfig(seed=seed))
        return [(r.topic_kind, r.key, r.value, r.kind)
                for r in (sim.next_record() for _ in range(2000))]

    assert first(7) == first(7)
    assert first(8) != first(7)


def test_valid_and_duplicate_records_follow_the_contract_malformed_ones_do_not(
        run: tuple[Simulator, list[SimRecord]]) -> None:
    error_types = set()
    for record in run[1]:
        assert record.topic_kind == "interaction"
        assert record.key
        if record.kind == "malformed":
            with pytest.raises(ValidationError) as caught:
                Interaction.model_validate_json(record.value)
            error_types.add(caught.value.errors()[0]["type"])
        else:
            parsed = Interaction.model_validate_json(record.value)
            assert parsed.event_id == record.event_id
            assert record.key == parsed.employee_id.encode()
    # every way of spoiling a record shows up: bad JSON, not an object, missing, wrong type,
    # out of range, end before start, unknown channel
    assert len(error_types) >= 7, error_types


def test_shares_duplicates_and_unique_event_ids(run: tuple[Simulator, list[SimRecord]]) -> None:
    sim, records = run
    kinds = Counter(r.kind for r in records)
    assert kinds["malformed"] / SAMPLE == pytest.approx(0.02, abs=0.005)
    assert kinds["duplicate"] / SAMPLE == pytest.approx(0.01, abs=0.004)
    stats = sim.stats()
    assert (stats["valid"], stats["duplicate"], stats["malformed"]) == (
        kinds["valid"], kinds["duplicate"], kinds["malformed"])
    assert stats["completions"] == 0

    sent: set[bytes] = set()
    valid_ids: list[str | None] = []
    for record in records:
        if record.kind == "duplicate":
            assert record.value in sent  # the exact bytes of an earlier valid record
        elif record.kind == "valid":
            sent.add(record.value)
            valid_ids.append(record.event_id)
    assert len(set(valid_ids)) == len(valid_ids)


def test_event_time_advances_in_shifts_and_is_mostly_in_order(
        interactions: list[Interaction]) -> None:
    start = SimulatorConfig().start
    per_day = Counter(i.ended_at.date() for i in interactions)
    assert len(per_day) >= 5  # 20,000 records are about six working days of 60 people
    busy_days = sorted(per_day.values())[1:-1]  # the first and last day of the run are partial
    assert all(abs(n - 60 * 55) < 0.1 * 60 * 55 for n in busy_days), per_day

    latest = start
    behind = 0
    last_by_employee: dict[str, datetime] = {}
    behind_by_employee: Counter[str] = Counter()
    for i in interactions:
        assert i.ended_at >= start
        assert 8 <= i.ended_at.hour < 16, i.ended_at
        handled = timedelta(seconds=i.talk_s + i.hold_s)
        assert abs(i.ended_at - i.started_at - handled) < timedelta(milliseconds=1)
        if i.channel in ("email", "messaging"):
            assert i.hold_s == 0
        if i.ended_at < latest:
            behind += 1
            assert latest - i.ended_at > timedelta(seconds=30)  # late by minutes to hours
        latest = max(latest, i.ended_at)
        previous = last_by_employee.get(i.employee_id)
        if previous is not None and i.ended_at < previous:
            behind_by_employee[i.employee_id] += 1
        last_by_employee[i.employee_id] = max(previous or i.ended_at, i.ended_at)
    assert 0.015 < behind / len(interactions) < 0.05  # late_share 0.03
    per_employee = Counter(i.employee_id for i in interactions)
    assert all(behind_by_employee[e] < 0.1 * n for e, n in per_employee.items())


def test_realistic_mix(interactions: list[Interaction]) -> None:
    channels = Counter(i.channel for i in interactions)
    total = len(interactions)
    for channel, share in (("voice", 0.5), ("chat", 0.3), ("email", 0.12), ("messaging", 0.08)):
        assert channels[channel] / total == pytest.approx(share, abs=0.02)
    surveyed = [i for i in interactions if i.csat is not None]
    assert len(surveyed) / total == pytest.approx(0.35, abs=0.02)
    assert sum(i.nps is not None for i in surveyed) / len(surveyed) == pytest.approx(0.5, abs=0.03)
    assert all(i.nps is None for i in interactions if i.csat is None)
    assert sum(i.resolved is None for i in interactions) / total == pytest.approx(0.1, abs=0.02)
    assert all(120 <= i.talk_s <= 900 for i in interactions if i.channel == "voice")
    partial = sum(len(i.qa) < len(QA_ITEMS) for i in interactions) / total
    assert 0.03 < partial < 0.07
    assert all(set(i.qa) <= set(QA_ITEMS) for i in interactions)

    # good contacts are mostly rated 4-5, poor ones mostly 1-3
    def satisfied(group: list[Interaction]) -> float:
        return sum(i.csat is not None and i.csat >= 4 for i in group) / len(group)

    good = [i for i in surveyed if all(i.qa.values()) and i.resolved is True]
    poor = [i for i in surveyed if sum(i.qa.values()) <= len(i.qa) - 2 and i.resolved is False]
    assert satisfied(good) > 0.75
    assert satisfied(poor) < 0.5


def test_weak_standards_show_in_the_work(run: tuple[Simulator, list[SimRecord]],
                                         interactions: list[Interaction]) -> None:
    sim = run[0]
    profiles = sim.employees()
    assert len(profiles) == 60
    assert {p.team_id for p in profiles} == {f"team-{n:02d}" for n in range(1, 7)}
    assert all(len(p.weak) <= 2 for p in profiles)
    excellent = [p for p in profiles if min(p.pass_probability.values()) >= 0.97]
    assert 1 <= len(excellent) <= 15

    passes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for i in interactions:
        for item, passed in i.qa.items():
            passes[(i.employee_id, item)].append(passed)
    weak_pairs = [(p.employee_id, s) for p in profiles for s in p.weak if s in QA_ITEMS]
    assert weak_pairs
    for employee_id, item in weak_pairs:
        weak = passes[(employee_id, item)]
        strong = [x for p in profiles if item not in p.weak
                  for x in passes[(p.employee_id, item)]]
        assert sum(weak) / len(weak) < 0.7
        assert sum(strong) / len(strong) > 0.85


def test_learning_loop_completes_lessons_once_and_closes_the_gap() -> None:
    sim = Simulator(SimulatorConfig())
    for _ in range(300):
        sim.next_record()
    at = sim.now()
    pairs = [(p.employee_id, s) for p in sim.employees() for s in p.weak][:20]
    sent: dict[str, tuple[str, str]] = {}
    for n, (employee_id, standard) in enumerate(pairs):
        sim.on_assignment(_assignment(employee_id, standard, at, n))
        sent[f"asg-{n}"] = (employee_id, standard)

    def completions_until(until: datetime) -> list[LessonCompletion]:
        found = []
        while sim.now() < until:
            record = sim.next_record()
            if record.topic_kind == "completion":
                completion = LessonCompletion.model_validate_json(record.value)
                assert completion.completed_at <= sim.now()  # delivered once the clock passed it
                assert record.key == completion.employee_id.encode()
                assert record.event_id == completion.event_id
                found.append(completion)
        return found

    done = completions_until(at + timedelta(days=3))
    assert 0.6 * len(sent) <= len(done) < len(sent)  # about 85% complete
    assert [c.completed_at for c in done] == sorted(c.completed_at for c in done)
    profiles = {p.employee_id: p for p in sim.employees()}
    for c in done:
        employee_id, standard = sent[c.assignment_id]
        assert c.event_id == f"cmp-{c.assignment_id}"
        assert (c.employee_id, c.lesson_id) == (employee_id, f"lesson-{standard}")
        assert at + timedelta(hours=2) <= c.completed_at <= at + timedelta(days=2)
        assert c.score is not None and 0 <= c.score <= 100
        assert profiles[employee_id].pass_probability[standard] >= 0.9
        assert standard not in profiles[employee_id].weak
    assert len({c.assignment_id for c in done}) == len(done)

    # the same assignments again (a redelivery) and unreadable ones: nothing more to complete
    for n, (employee_id, standard) in enumerate(pairs):
        sim.on_assignment(_assignment(employee_id, standard, at, n))
    for junk in (b"\xff not json", b"[]", b'{"assignment_id": 5}', b'{"employee_id": "e"}'):
        sim.on_assignment(junk)
    assert completions_until(sim.now() + timedelta(days=3)) == []
    assert sim.stats()["completions"] == len(done)
    assert sim.stats()["assignments"] == len(sent)


def test_without_learning_assignments_are_ignored() -> None:
    for learning, expected in ((True, ["completion"]), (False, [])):
        sim = Simulator(SimulatorConfig(learning=learning))
        # assigned days ago: a completion would be due at once
        sim.on_assignment(_assignment("emp-0001", "greeting", sim.now() - timedelta(days=3), 1))
        records = [sim.next_record() for _ in range(50)]
        assert [r.topic_kind for r in records if r.topic_kind != "interaction"] == expected


@pytest.mark.parametrize("bad", [
    {"employees": 0},
    {"teams": 0},
    {"teams": 61},
    {"malformed_share": -0.1},
    {"duplicate_share": 1.5},
    {"late_share": 2.0},
    {"survey_share": -1.0},
    {"malformed_share": 0.6, "duplicate_share": 0.6},
    {"contacts_per_day": 0},
    {"start": datetime(2026, 11, 2, 8, 0)},
])
def test_config_refuses_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        SimulatorConfig(**bad)
    assert "\n" not in str(caught.value)


def test_config_accepts_other_time_zones_and_edges() -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    sim = Simulator(SimulatorConfig(seed=1, employees=1, teams=1, malformed_share=0.0,
                                    duplicate_share=0.0, late_share=0.0, survey_share=1.0,
                                    start=start))
    records = [sim.next_record() for _ in range(200)]
    assert all(r.kind == "valid" and r.key == b"emp-0001" for r in records)
    parsed = [json.loads(r.value) for r in records]
    assert all(p["csat"] is not None for p in parsed)
    ends = [datetime.fromisoformat(p["ended_at"]) for p in parsed]
    assert ends == sorted(ends) and ends[0] >= start
    assert all(e.utcoffset() == timedelta(hours=-5) and 9 <= e.hour < 17 for e in ends)
    assert ends[-1] - ends[0] > timedelta(days=2)  # 55 contacts a day for one employee



def _passes(interaction: Interaction) -> dict[str, bool]:
    """What the default playbook's standards say of an interaction, where they apply."""
    passed = dict(interaction.qa)
    if interaction.channel in ("voice", "chat"):
        passed[HOLD_TIME] = interaction.hold_s <= 60
    if interaction.resolved is not None:
        passed[FIRST_CONTACT_RESOLUTION] = interaction.resolved
    if interaction.csat is not None:
        passed[CUSTOMER_SATISFACTION] = interaction.csat >= 4
    return passed


def test_true_rates_of_derived_standards_match_the_pass_rates_in_the_work() -> None:
    # everyone surveyed and about 6,000 contacts each: pass rates within about 0.01 (1 sd)
    sim = Simulator(SimulatorConfig(seed=3, employees=4, teams=1, survey_share=1.0,
                                    malformed_share=0.0, duplicate_share=0.0))
    passes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for _ in range(24_000):
        interaction = Interaction.model_validate_json(sim.next_record().value)
        for standard, passed in _passes(interaction).items():
            passes[(interaction.employee_id, standard)].append(passed)

    for profile in sim.employees():
        rates = sim.true_rates(profile.employee_id)
        assert set(rates) == set(TRAITS)
        for standard in TRAITS:
            seen = passes[(profile.employee_id, standard)]
            assert len(seen) > 4000
            assert sum(seen) / len(seen) == pytest.approx(rates[standard], abs=0.03), \
                (profile.employee_id, standard)
            assert sim.true_rate(profile.employee_id, standard) == rates[standard]
        p = profile.pass_probability
        for standard in (*QA_ITEMS, HOLD_TIME):
            assert rates[standard] == p[standard]
        # fewer requests are resolved when transferred; a satisfied customer needs a good contact
        assert rates[FIRST_CONTACT_RESOLUTION] < p[FIRST_CONTACT_RESOLUTION]
        assert rates[CUSTOMER_SATISFACTION] < p[CUSTOMER_SATISFACTION] - 0.1
    with pytest.raises(KeyError):
        sim.true_rate("emp-9999", "greeting")
    with pytest.raises(KeyError):
        sim.true_rate("emp-0001", "not-a-standard")


@pytest.fixture(scope="module")
def learned() -> tuple[Simulator, list[SimRecord], datetime, dict[str, float], dict[str, float]]:
    """Two employees, emp-0001 weak on first contact resolution: its lesson is assigned after
    2,000 records and completed later. (simulator, records, clock when the completion was
    delivered, emp-0001's true rates before, after)."""
    sim = Simulator(SimulatorConfig(seed=3, employees=2, teams=1))
    assert FIRST_CONTACT_RESOLUTION in sim.employees()[0].weak
    before = sim.true_rates("emp-0001")
    records = [sim.next_record() for _ in range(2000)]
    sim.on_assignment(_assignment("emp-0001", FIRST_CONTACT_RESOLUTION, sim.now(), 1))
    delivered: datetime | None = None
    for _ in range(8000):
        records.append(sim.next_record())
        if records[-1].topic_kind == "completion":
            delivered = sim.now()
    assert delivered is not None  # asg-1 of seed 3 is completed
    return sim, records, delivered, before, sim.true_rates("emp-0001")


def test_true_rate_changes_at_the_event_time_a_lesson_shows_in_the_work(
        learned: tuple[Simulator, list[SimRecord], datetime, dict[str, float],
                       dict[str, float]]) -> None:
    sim, records, delivered, before, after = learned
    fcr = FIRST_CONTACT_RESOLUTION
    start = sim.config.start
    ms = timedelta(milliseconds=1)
    assert after[fcr] > 0.85 and before[fcr] < 0.6
    # a satisfied customer needs a resolved request: that truth moves too, the others do not
    assert after[CUSTOMER_SATISFACTION] > before[CUSTOMER_SATISFACTION]
    assert {k: v for k, v in after.items() if k not in (fcr, CUSTOMER_SATISFACTION)} == \
        {k: v for k, v in before.items() if k not in (fcr, CUSTOMER_SATISFACTION)}
    for at, expected in ((start - timedelta(days=1), before), (start, before),
                         (delivered, before),  # that interaction was made before
                         (delivered + ms, after), (sim.now(), after), (None, after)):
        assert sim.true_rates("emp-0001", at) == expected, at
        assert sim.true_rate("emp-0001", fcr, at) == expected[fcr]
    assert sim.true_rates("emp-0002", start) == sim.true_rates("emp-0002", sim.now())

    # the interactions on either side of the change pass as often as the truth at their time
    # says (late records included: they are judged by when they happened, not were delivered)
    sides: dict[bool, tuple[list[bool], list[float]]] = {False: ([], []), True: ([], [])}
    for record in records:
        if record.kind != "valid" or record.topic_kind != "interaction":
            continue
        interaction = Interaction.model_validate_json(record.value)
        if interaction.employee_id != "emp-0001" or interaction.resolved is None:
            continue
        passed, truth = sides[interaction.ended_at > delivered]
        passed.append(interaction.resolved)
        truth.append(sim.true_rate("emp-0001", fcr, interaction.ended_at))
    for passed, truth in sides.values():
        assert len(passed) > 700
        assert sum(passed) / len(passed) == pytest.approx(sum(truth) / len(truth), abs=0.05)
    assert set(sides[False][1]) == {before[fcr]} and set(sides[True][1]) == {after[fcr]}


def test_the_demo_judges_opened_gaps_by_the_truth_at_their_event_time(
        learned: tuple[Simulator, list[SimRecord], datetime, dict[str, float],
                       dict[str, float]]) -> None:
    sim, _, delivered, before, after = learned
    playbook = load_playbook(None)
    fcr = FIRST_CONTACT_RESOLUTION
    target = playbook.standards[fcr].target
    assert before[fcr] < target <= after[fcr]

    def gap(n: int, standard: str, at: datetime, status: str = "opened",
            employee_id: str = "emp-0001") -> dict[str, Any]:
        return {"gap_id": f"gap-{n}", "employee_id": employee_id, "standard": standard,
                "status": status, "at": at.isoformat(), "target": target}

    gaps = [gap(1, fcr, delivered - timedelta(hours=1)),  # truly below then
            gap(1, fcr, delivered + timedelta(hours=2), "closed"),  # only opened ones count
            gap(2, fcr, delivered + timedelta(hours=1)),  # after the lesson: at/above
            gap(3, "greeting", delivered),  # 0.95 >= 0.7
            gap(4, "greeting", delivered, employee_id="emp-9999"),  # nobody the sim knows
            gap(5, "sentiment", delivered)]  # nor a standard it knows
    truth = judge_gaps(gaps, sim, playbook)
    assert (truth.below, truth.at_or_above, truth.unjudged) == (1, 2, 2)

    # at the end: the pairs truly below the playbook's targets, and whether they had a gap
    below = {(p.employee_id, s) for p in sim.employees()
             for s, rate in sim.true_rates(p.employee_id).items()
             if rate < playbook.standards[s].target}
    assert ("emp-0001", fcr) not in below and ("emp-0002", fcr) in below
    assert truth.pairs_below == len(below)
    assert truth.pairs_below_gapped == len(below & {("emp-0001", "greeting"),
                                                    ("emp-0001", fcr)})
    assert truth.pairs_short <= truth.pairs_below
    assert judge_gaps([gap(6, fcr, delivered, employee_id="emp-0002")], sim,
                      playbook).pairs_below_gapped == 1
