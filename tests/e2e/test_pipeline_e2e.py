"""The pipeline end to end: a real worker process on the embedded broker, fed with kafka-python
like any producer would, checked on every output topic and on its /metrics.

Each test produces known input, derives from the pure decision core (the oracle) exactly which
records must come out, waits for them (polling with a deadline), and then checks that exactly
those came out: right ids, right bytes, right keys, nothing twice, nothing extra.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from urllib.request import urlopen

import pytest
from kafka import KafkaConsumer, TopicPartition

from agents.record_processor import partition_for
from e2e.harness import (
    DAY1,
    InteractionMaker,
    Oracle,
    Out,
    Pipeline,
    Sent,
    completion,
    wait_until,
)
from models.dead_letters import (
    ERROR_TYPES,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    INVALID_EVENT,
    NOT_AN_OBJECT,
    NOT_JSON,
    REJECTED,
    TOO_LATE,
    UNSUPPORTED_SCHEMA,
)
from models.events import (
    BonusAward,
    ExecutionScore,
    LessonAssignment,
    LessonEffect,
    PerformanceGap,
)
from models.playbook import load_playbook
from streams import metrics, topics
from streams.simulator import SimRecord, Simulator, SimulatorConfig

PLAYBOOK = load_playbook(None)
MODELS = {
    topics.EXECUTION_SCORES: ExecutionScore,
    topics.PERFORMANCE_GAPS: PerformanceGap,
    topics.LESSON_ASSIGNMENTS: LessonAssignment,
    topics.BONUS_AWARDS: BonusAward,
    topics.LESSON_EFFECTS: LessonEffect,
}
RECORD_TOPICS = tuple(MODELS)
DAY2 = datetime.fromisoformat("2026-11-03T09:00:00+00:00")
DAY2_PASSES = 35


# ---- input builders --------------------------------------------------------------------------

def simulated(seed: int, count: int, **config: float) -> list[SimRecord]:
    """The first `count` records of a seeded simulator (8 employees, no learning system)."""
    sim = Simulator(SimulatorConfig(seed=seed, employees=8, teams=2, learning=False,
                                    **config))  # type: ignore[arg-type]
    return [sim.next_record() for _ in range(count)]


def struggling(employee_id: str, n: int, tag: str = "") -> tuple[InteractionMaker, list[bytes]]:
    """`n` day-1 voice contacts that all fail empathy and all delight the customer (csat 5):
    a gap on empathy opens at the 6th (the head start of a new employee), with its lesson; every
    one earns points."""
    make = InteractionMaker(employee_id, start=DAY1, tag=tag)
    return make, [make(fail=("empathy",), csat=5) for _ in range(n)]


def malformed_extras(key: bytes) -> list[tuple[bytes, bytes]]:
    """Bad records the simulator does not make: empty, a bare number, a future schema."""
    future = json.loads(InteractionMaker("emp-future")())
    future["schema_version"] = 2
    return [(key, b""), (key, b"42"), (key, json.dumps(future).encode())]


# ---- shared checks ---------------------------------------------------------------------------

def check_outputs(p: Pipeline, oracle: Oracle, sent: list[Sent]) -> dict[str, list[Out]]:
    """Everything on the output topics is exactly what the oracle published, once each, with
    the contract's fields, keyed and partitioned by employee; dead letters carry the input's
    original bytes and where it came from. Returns the output records by topic."""
    by_topic: dict[str, list[Out]] = defaultdict(list)
    for out in p.reader.all():
        by_topic[out.topic].append(out)
    parts = p.reader.partitions

    for topic in topics.OUTPUTS:
        repeated = [i for i, n in Counter(o.id for o in by_topic[topic]).items() if n > 1]
        assert not repeated, f"ids published more than once on {topic}: {repeated[:5]}"

    for topic in RECORD_TOPICS:
        got = {o.id: o for o in by_topic[topic]}
        want = oracle.outputs.get(topic, {})
        assert sorted(got) == sorted(want), (
            f"{topic}: missing {sorted(set(want) - set(got))[:5]}, "
            f"unexpected {sorted(set(got) - set(want))[:5]}")
        for rid, out in got.items():
            assert out.value == want[rid], f"{topic} {rid}: value differs from the decision core"
            record = MODELS[topic].model_validate_json(out.value)  # the contract, extra=forbid
            raw = out.json
            assert raw["schema_version"] == 1
            assert raw["employee_id"] and raw["team_id"]
            assert raw["playbook_version"] == PLAYBOOK.version
            assert datetime.fromisoformat(raw["at"]).tzinfo is not None
            if isinstance(record, ExecutionScore):
                assert record.results, f"score {rid} has no per-standard results"
            elif isinstance(record, LessonEffect):
                assert record.before_n + record.after_n > 0, f"effect {rid} measured nothing"
            elif isinstance(record, LessonAssignment) and record.status == "completed":
                assert record.completion_event_id and record.evidence.statistic, rid
            else:
                assert record.evidence.interaction_ids and record.evidence.statistic, \
                    f"{topic} {rid} has no evidence"
            assert out.key == record.employee_id.encode(), \
                f"{topic} {rid} is keyed {out.key!r}, not by its employee id"
            home = partition_for(record.employee_id.encode(), parts[p.topic(topic)])
            assert out.partition == home, f"{topic} {rid} is in partition {out.partition}, " \
                f"not the employee's partition {home}"

    # dead letters: the original record, byte for byte, and why and where from
    dead = {(o.headers.get(H_TOPIC), o.headers.get(H_PARTITION), o.headers.get(H_OFFSET)): o
            for o in by_topic[topics.DEAD_LETTERS]}
    want_dead = {(p.topic(s.source).encode(), str(s.partition).encode(),
                  str(s.offset).encode()): (s, e) for s, e in oracle.dead}
    assert sorted(dead) == sorted(want_dead), (
        f"dead letters: missing {sorted(set(want_dead) - set(dead))[:5]}, "
        f"unexpected {sorted(set(dead) - set(want_dead))[:5]}")
    for where, (s, expected) in want_dead.items():
        out = dead[where]
        assert out.value == s.value, f"dead letter {where}: not the original bytes"
        assert out.key == (s.key or b""), f"dead letter {where}: key {out.key!r}"
        assert out.headers[H_ERROR_TYPE].decode() == expected.error_type
        assert out.headers[H_ERROR_TYPE].decode() in ERROR_TYPES
        assert out.headers[H_ERROR_MESSAGE].decode() == expected.error_message
        assert out.headers[H_ERROR_MESSAGE].strip()

    check_consistency(by_topic, sent)
    return by_topic


def check_consistency(by_topic: dict[str, list[Out]], sent: list[Sent]) -> None:
    """Gaps, assignments and awards fit together and point at real interactions."""
    interactions: dict[str, set[str]] = defaultdict(set)
    for s in sent:
        try:
            rec = json.loads(s.value)
            interactions[rec["employee_id"]].add(rec["interaction_id"])
        except (ValueError, KeyError, TypeError):
            continue
    gaps = [PerformanceGap.model_validate_json(o.value) for o in by_topic[topics.PERFORMANCE_GAPS]]
    opened = {g.gap_id: g for g in gaps if g.status == "opened"}
    for g in gaps:
        assert set(g.evidence.interaction_ids) <= interactions[g.employee_id], \
            f"gap {g.gap_id} cites interactions its employee never had"
        if g.status == "closed":
            assert g.gap_id in opened, f"gap {g.gap_id} closed but never opened"
            assert opened[g.gap_id].standard == g.standard
            assert opened[g.gap_id].employee_id == g.employee_id
    for o in by_topic[topics.LESSON_ASSIGNMENTS]:
        a = LessonAssignment.model_validate_json(o.value)
        assert a.gap_id in opened, f"assignment {a.assignment_id} for gap {a.gap_id} never opened"
        gap = opened[a.gap_id]
        assert (a.employee_id, a.standard) == (gap.employee_id, gap.standard)
        assert a.lesson_id == PLAYBOOK.standards[a.standard].lesson
        if a.status == "assigned":
            assert a.due_at > a.at
        else:
            assert a.ended_at == a.at
    per_day: Counter[tuple[str, str]] = Counter()
    for o in by_topic[topics.BONUS_AWARDS]:
        award = BonusAward.model_validate_json(o.value)
        assert 0 < award.points <= award.requested_points
        assert set(award.evidence.interaction_ids) <= interactions[award.employee_id]
        per_day[(award.employee_id, award.period)] += award.points
    over = {k: v for k, v in per_day.items() if v > PLAYBOOK.limits.daily_points_cap}
    assert not over, f"daily points cap exceeded: {over}"


def committed_offsets(p: Pipeline, source: str) -> dict[int, int]:
    """The worker group's committed offsets on an input topic, by partition (None left out)."""
    consumer = KafkaConsumer(bootstrap_servers=p.settings.bootstrap_servers,
                             group_id=p.app_id, enable_auto_commit=False)
    try:
        out = {}
        for partition in range(p.partitions_of(source)):
            offset = consumer.committed(TopicPartition(p.topic(source), partition))
            if offset is not None:
                out[partition] = offset
        return out
    finally:
        consumer.close(autocommit=False)


def ids(p: Pipeline) -> dict[str, set[str]]:
    return {t: {o.id for o in p.reader.of(t)} for t in topics.OUTPUTS}


# ---- a. conservation -------------------------------------------------------------------------

@pytest.mark.e2e
def test_every_record_is_scored_once_recognised_as_duplicate_or_dead_lettered(
        pipeline: Pipeline) -> None:
    p = pipeline
    sim = simulated(seed=21, count=320, malformed_share=0.08, duplicate_share=0.08)
    kinds = Counter(r.kind for r in sim)
    assert kinds["malformed"] >= 14 and kinds["duplicate"] >= 10, kinds  # every spoiling kind

    make, crafted = struggling("emp-a-crafted", 12)
    # more than the dedupe horizon (168 h) older than the employee's newest event
    too_late = make(at=DAY1 - timedelta(days=8))
    stray_make = InteractionMaker("emp-a-stray")
    stray = stray_make(csat=4)
    n_parts = p.partitions_of(topics.INTERACTIONS)
    home = partition_for(b"emp-a-stray", n_parts)

    sent = p.produce([(r.key, r.value) for r in sim])
    sent += p.produce([(b"emp-a-crafted", v) for v in crafted])
    sent += p.produce(malformed_extras(b"emp-a-crafted") + [(b"emp-a-crafted", too_late)])
    # keyed by its employee but written to another partition, as a misconfigured producer might
    sent += p.produce([(b"emp-a-stray", stray)], partition=(home + 1) % n_parts)
    assert sent[-1].partition != home

    oracle = Oracle()
    for s in sent:
        oracle.feed(s)
    n_dup = oracle.outcomes[(topics.INTERACTIONS, "duplicate")]
    n_dead = oracle.outcomes[(topics.INTERACTIONS, "dead_lettered")]
    n_ok = oracle.outcomes[(topics.INTERACTIONS, "processed")]
    assert n_ok + n_dup + n_dead == len(sent)

    events = p.wait_events({"processed": n_ok, "duplicate": n_dup, "dead_lettered": n_dead,
                            "forwarded": 1})
    p.reader.wait_for(oracle.counts(), "conservation")
    assert events == Counter(processed=n_ok, duplicate=n_dup, dead_lettered=n_dead, forwarded=1)

    by_topic = check_outputs(p, oracle, sent)

    # the conservation law, in the simulator's own terms
    valid_ids = [r.event_id for r in sim if r.kind == "valid"]
    valid_ids += [json.loads(v)["event_id"] for v in crafted + [stray]]
    scored = Counter(o.id for o in by_topic[topics.EXECUTION_SCORES])
    assert sorted(scored) == sorted(valid_ids) and set(scored.values()) == {1}
    assert n_dup == kinds["duplicate"], "every exact duplicate is recognised, none scored"
    assert {r.event_id for r in sim if r.kind == "duplicate"} <= set(scored)
    malformed_at = {(s.partition, s.offset) for s, r in zip(sent, sim, strict=False)
                    if r.kind == "malformed"}
    assert len(malformed_at) == kinds["malformed"]
    dead_at = {(int(o.headers[H_PARTITION]), int(o.headers[H_OFFSET]))
               for o in by_topic[topics.DEAD_LETTERS]}
    assert malformed_at <= dead_at and len(dead_at) == kinds["malformed"] + 4
    error_types = Counter(o.headers[H_ERROR_TYPE].decode() for o in by_topic[topics.DEAD_LETTERS])
    assert {NOT_JSON, NOT_AN_OBJECT, INVALID_EVENT, UNSUPPORTED_SCHEMA} <= set(error_types)
    assert error_types[TOO_LATE] == 1

    # the stray record was moved to its employee's partition and scored there, keyed by employee
    stray_score = [o for o in by_topic[topics.EXECUTION_SCORES]
                   if o.json["employee_id"] == "emp-a-stray"]
    assert len(stray_score) == 1 and stray_score[0].key == b"emp-a-stray"

    # the crafted employee: one gap on empathy, its lesson, and points for every csat 5
    crafted_gaps = [o.json for o in by_topic[topics.PERFORMANCE_GAPS]
                    if o.json["employee_id"] == "emp-a-crafted"]
    assert [(g["standard"], g["status"]) for g in crafted_gaps] == [("empathy", "opened")]
    crafted_lessons = [o.json for o in by_topic[topics.LESSON_ASSIGNMENTS]
                       if o.json["employee_id"] == "emp-a-crafted"]
    assert [(a["lesson_id"], a["gap_id"]) for a in crafted_lessons] == [
        ("empathy-statements", crafted_gaps[0]["gap_id"])]
    crafted_awards = [o.json for o in by_topic[topics.BONUS_AWARDS]
                      if o.json["employee_id"] == "emp-a-crafted"]
    assert Counter(a["rule"] for a in crafted_awards) == {"delighted_customer": 12}


# ---- b. duplicates ---------------------------------------------------------------------------

@pytest.mark.e2e
def test_replayed_input_never_awards_or_assigns_twice(pipeline: Pipeline) -> None:
    p = pipeline
    emp = "emp-b"
    oracle = Oracle()
    make, day1 = struggling(emp, 12)
    sent = p.produce([(emp.encode(), v) for v in day1])
    for s in sent:
        oracle.feed(s)
    p.wait_events({"processed": 12})
    p.reader.wait_for(oracle.counts(), "day 1")
    [assignment] = oracle.records(topics.LESSON_ASSIGNMENTS)

    # the learning system reports the lesson done; then the employee does well on day 2
    done = completion(emp, assignment["assignment_id"], f"cmp-{assignment['assignment_id']}",
                      DAY1 + timedelta(hours=6), assignment["lesson_id"])
    first_completion = p.produce([(emp.encode(), done)], topics.LESSON_COMPLETIONS)
    sent += first_completion
    assert oracle.feed(first_completion[0]).outcome == "processed"
    p.wait_events({"processed": 1}, topics.LESSON_COMPLETIONS)
    make.clock = DAY2
    # enough passes for the recovery test to close the gap (it needs about 30 in a row)
    day2 = p.produce([(emp.encode(), make()) for _ in range(DAY2_PASSES)])
    sent += day2
    for s in day2:
        oracle.feed(s)
    p.wait_events({"processed": 12 + DAY2_PASSES})
    p.reader.wait_for(oracle.counts(), "day 2")
    check_outputs(p, oracle, sent)

    # the scenario has every kind of effect a replay could double
    gaps = Counter((g["standard"], g["status"]) for g in oracle.records(topics.PERFORMANCE_GAPS))
    assert gaps == {("empathy", "opened"): 1, ("empathy", "closed"): 1}
    rules = Counter(a["rule"] for a in oracle.records(topics.BONUS_AWARDS))
    assert rules == {"delighted_customer": 12, "sustained_excellence": 1,
                     "gap_closed_after_lesson": 1}
    before = ids(p)
    out_before = {t: p.metric("frontline_records_out_total", topic=t) for t in topics.OUTPUTS}
    assert p.metric("frontline_lessons_completed_total") == 1

    # replay everything, and a second completion (new event id) of the completed lesson
    again = completion(emp, assignment["assignment_id"], "cmp-second-try", DAY2,
                       assignment["lesson_id"])
    replay = p.produce([(emp.encode(), s.value) for s in sent if s.source == topics.INTERACTIONS])
    replay += p.produce([(emp.encode(), done), (emp.encode(), again)], topics.LESSON_COMPLETIONS)
    expectations = [oracle.feed(s) for s in replay]
    assert [e.outcome for e in expectations] == ["duplicate"] * (13 + DAY2_PASSES) + \
        ["dead_lettered"]
    assert expectations[-1].error_type == REJECTED

    events = p.wait_handled(2 * (12 + DAY2_PASSES), what="the replay")
    completions = p.wait_handled(3, topics.LESSON_COMPLETIONS, what="the replayed completions")
    assert events == Counter(processed=12 + DAY2_PASSES, duplicate=12 + DAY2_PASSES,
                             dead_lettered=0, forwarded=0)
    assert completions == Counter(processed=1, duplicate=1, dead_lettered=1, forwarded=0)
    expected = {t: len(before[t]) for t in topics.OUTPUTS}
    expected[topics.DEAD_LETTERS] += 1
    p.reader.wait_for(expected, "after the replay")

    after = ids(p)
    for t in RECORD_TOPICS:
        assert after[t] == before[t], f"{t} changed on replay: new {sorted(after[t] - before[t])}"
    [dead] = after[topics.DEAD_LETTERS] - before[topics.DEAD_LETTERS]
    assert dead.startswith(p.topic(topics.LESSON_COMPLETIONS) + "/")
    out_after = {t: p.metric("frontline_records_out_total", topic=t) for t in topics.OUTPUTS}
    assert out_after == {**out_before, topics.DEAD_LETTERS: out_before[topics.DEAD_LETTERS] + 1}
    assert p.metric("frontline_lessons_completed_total") == 1
    check_outputs(p, oracle, sent + replay)


# ---- b2. the lesson lifecycle on the topics ---------------------------------------------------

@pytest.mark.e2e
def test_every_gap_gets_its_lesson_or_a_reason_and_every_assignment_ends(
        pipeline: Pipeline) -> None:
    p = pipeline
    oracle = Oracle()
    failing = ("greeting", "empathy", "proper_closing")
    # three gaps at once: two lessons (the cap), the third deferred with the reason
    life = InteractionMaker("emp-life", start=DAY1)
    sent = p.produce([(b"emp-life", life(fail=failing)) for _ in range(6)])
    expired = InteractionMaker("emp-expire", start=DAY1)
    sent += p.produce([(b"emp-expire", expired(fail=("empathy",))) for _ in range(6)])
    for s in sent:
        oracle.feed(s)
    p.wait_events({"processed": 12})
    p.reader.wait_for(oracle.counts(), "gaps and lessons")
    lessons = {a["standard"]: a for a in oracle.records(topics.LESSON_ASSIGNMENTS)
               if a["employee_id"] == "emp-life"}
    assert set(lessons) == {"greeting", "proper_closing"}
    [deferred] = [g for g in oracle.records(topics.PERFORMANCE_GAPS) if g["status"] == "deferred"]
    assert (deferred["employee_id"], deferred["standard"], deferred["reason"]) == \
        ("emp-life", "empathy", "max_open_lessons")

    # a completion frees a slot: the deferred gap gets its lesson with the next interaction
    done = completion("emp-life", lessons["greeting"]["assignment_id"], "cmp-life-1",
                      life.clock + timedelta(minutes=1), "warm-greeting")
    more = p.produce([(b"emp-life", done)], topics.LESSON_COMPLETIONS)
    assert oracle.feed(more[0]).outcome == "processed"
    p.wait_events({"processed": 1}, topics.LESSON_COMPLETIONS)
    step = p.produce([(b"emp-life", life(fail=failing))])
    # then the employee recovers: the gaps close and the lessons not done are cancelled
    step += p.produce([(b"emp-life", life()) for _ in range(45)])
    # the other employee never does the lesson: it expires after due + grace (event time)
    [a_exp] = [a for a in oracle.records(topics.LESSON_ASSIGNMENTS)
               if a["employee_id"] == "emp-expire"]
    grace = timedelta(days=PLAYBOOK.limits.lesson_grace_days)
    late = datetime.fromisoformat(a_exp["due_at"]) + grace + timedelta(seconds=1)
    step += p.produce([(b"emp-expire", expired(fail=("empathy",), at=late))])
    for s in step:
        oracle.feed(s)
    more += step
    p.wait_events({"processed": 12 + 47})
    p.reader.wait_for(oracle.counts(), "the lifecycle")
    check_outputs(p, oracle, sent + more)

    by_id: dict[str, list[str]] = {}
    for a in oracle.records(topics.LESSON_ASSIGNMENTS):
        by_id.setdefault(a["assignment_id"], []).append(a["status"])
    life_ids = {a["assignment_id"]: a["standard"]
                for a in oracle.records(topics.LESSON_ASSIGNMENTS)
                if a["employee_id"] == "emp-life"}
    assert sorted((life_ids[k], v) for k, v in by_id.items() if k in life_ids) == [
        ("empathy", ["assigned", "cancelled"]), ("greeting", ["assigned", "completed"]),
        ("proper_closing", ["assigned", "cancelled"])]
    assert by_id[a_exp["assignment_id"]] == ["assigned", "expired"]
    # the expired lesson's gap is still open: it is assigned again (a new id)
    again = [a for a in oracle.records(topics.LESSON_ASSIGNMENTS)
             if a["employee_id"] == "emp-expire" and a["assignment_id"] != a_exp["assignment_id"]]
    assert [(a["gap_id"], a["status"]) for a in again] == [(a_exp["gap_id"], "assigned")]
    closed = {g["standard"] for g in oracle.records(topics.PERFORMANCE_GAPS)
              if g["employee_id"] == "emp-life" and g["status"] == "closed"}
    assert closed == set(failing)
    effects = [e for e in oracle.records(topics.LESSON_EFFECTS) if e["employee_id"] == "emp-life"]
    # the completed lesson is measured against its gap's own before; the cancelled ones were
    # still open after 20 interactions, so they are comparison gaps
    assert sorted((e["standard"], e["group"]) for e in effects) == [
        ("empathy", "comparison"), ("greeting", "lesson"), ("proper_closing", "comparison")]
    [measured] = [e for e in effects if e["group"] == "lesson"]
    # greeting's gap opened at the 4th interaction: 2 more came before the completion; after
    # it, one more failure, then passes
    w = PLAYBOOK.evidence.effect_window
    assert (measured["before_n"], measured["before_passes"], measured["after_n"],
            measured["after_passes"]) == (2, 0, w, w - 1)
    assert measured["assignment_id"] == lessons["greeting"]["assignment_id"]


# ---- c. metrics ------------------------------------------------------------------------------

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.mark.e2e
def test_metrics_match_what_is_on_the_topics(pipeline: Pipeline) -> None:
    p = pipeline
    sim = simulated(seed=33, count=240, malformed_share=0.06, duplicate_share=0.06)
    _, crafted = struggling("emp-c-crafted", 14)
    stray = InteractionMaker("emp-c-stray")(csat=5)
    n_parts = p.partitions_of(topics.INTERACTIONS)
    home = partition_for(b"emp-c-stray", n_parts)
    sent = p.produce([(r.key, r.value) for r in sim])
    sent += p.produce([(b"emp-c-crafted", v) for v in crafted])
    sent += p.produce(malformed_extras(b"emp-c-crafted"))
    sent += p.produce([(b"emp-c-stray", stray)], partition=(home + 1) % n_parts)
    oracle = Oracle()
    for s in sent:
        oracle.feed(s)
    n = {o: oracle.outcomes[(topics.INTERACTIONS, o)]
         for o in ("processed", "duplicate", "dead_lettered")}
    p.wait_events({**n, "forwarded": 1})
    p.reader.wait_for(oracle.counts(), "metrics run")
    by_topic = check_outputs(p, oracle, sent)

    samples = p.metrics()

    def m(name: str, **labels: str) -> float:
        return metrics.total(samples, name, **labels)

    src = topics.INTERACTIONS
    for outcome, count in {**n, "forwarded": 1}.items():
        assert m("frontline_events_total", topic=src, outcome=outcome) == count, outcome
    assert m("frontline_events_total", topic=topics.LESSON_COMPLETIONS) == 0
    # every record is timed, the forwarded one twice (where it arrived, and at home)
    timed = len(sent) + 1
    assert m("frontline_processing_seconds_count", topic=src) == timed
    assert m("frontline_processing_seconds_bucket", topic=src, le="+Inf") == timed
    assert 0 < m("frontline_processing_seconds_sum", topic=src) < timed * 1.0
    # ... and each one's end-to-end time, once its batch was on the broker
    assert m("frontline_end_to_end_seconds_count", topic=src) == timed
    assert 0 < m("frontline_end_to_end_seconds_sum", topic=src) < timed * 30.0
    # published records, by topic (the forwarded copy goes back to the input topic)
    for topic in topics.OUTPUTS:
        assert m("frontline_records_out_total", topic=topic) == len(by_topic[topic]), topic
    assert m("frontline_records_out_total", topic=src) == 1

    gaps = [o.json for o in by_topic[topics.PERFORMANCE_GAPS]]
    lessons = [o.json for o in by_topic[topics.LESSON_ASSIGNMENTS]]
    awards = [o.json for o in by_topic[topics.BONUS_AWARDS]]
    assert gaps and lessons and awards, "the run must exercise gaps, lessons and awards"
    for (status, standard), count in Counter((g["status"], g["standard"]) for g in gaps).items():
        assert m("frontline_gaps_total", transition=status, standard=standard) == count
    assert m("frontline_gaps_total") == len(gaps)
    for standard, count in Counter(a["standard"] for a in lessons).items():
        assert m("frontline_lessons_assigned_total", standard=standard) == count
    assert m("frontline_lessons_assigned_total") == len(lessons)
    for rule, count in Counter(a["rule"] for a in awards).items():
        assert m("frontline_awards_total", rule=rule) == count
        assert m("frontline_points_awarded_total", rule=rule) == sum(
            a["points"] for a in awards if a["rule"] == rule)
    assert m("frontline_awards_total") == len(awards)
    assert m("frontline_points_awarded_total") == sum(a["points"] for a in awards)
    dead = Counter(o.headers[H_ERROR_TYPE].decode() for o in by_topic[topics.DEAD_LETTERS])
    for error_type, count in dead.items():
        assert m("frontline_dead_letters_total", topic=src, error_type=error_type) == count
    assert m("frontline_dead_letters_total") == n["dead_lettered"] == sum(dead.values())
    assert m("frontline_lessons_completed_total") == 0
    assert m("frontline_worker_ready") == 1
    assert m("frontline_playbook_info", version=PLAYBOOK.version) == 1
    assert m("frontline_build_info") == 1
    # one worker has every input partition, and once it is idle nothing is behind
    # (the gauges are refreshed every 5 s)
    wait_until(lambda: p.metric("frontline_partitions_assigned", topic=src) == n_parts
               and p.metric("frontline_consumer_lag", topic=src) == 0,
               "the lag gauges to settle", 20,
               lambda: f"assigned {p.metric('frontline_partitions_assigned', topic=src)}, "
                       f"lag {p.metric('frontline_consumer_lag', topic=src)}")
    assert p.metric("frontline_partitions_assigned", topic=topics.LESSON_COMPLETIONS) == \
        p.partitions_of(topics.LESSON_COMPLETIONS)
    base = p.metrics_url.removesuffix("/metrics")
    for path in ("/healthz", "/readyz"):
        with urlopen(base + path, timeout=5) as response:
            assert (response.status, response.read()) == (200, b"ok\n"), path

    # no per-employee (or per-team, per-event) label anywhere
    people = set()
    for s in sent:
        try:
            rec = json.loads(s.value)
            people |= {rec["employee_id"], rec["team_id"], rec["event_id"]}
        except (ValueError, KeyError, TypeError):
            continue
    assert len(people) > 20
    for key in samples:
        for name, value in _LABEL.findall(key):
            assert not re.search("employee|team|agent|event_id|interaction", name), key
            assert value not in people, f"per-person label value in {key}"
            assert not value.startswith(("emp-", "team-", "evt-")), key


# ---- d. restart ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_restarted_worker_keeps_state_and_publishes_nothing_twice(pipeline: Pipeline) -> None:
    p = pipeline
    oracle = Oracle()
    sim = Simulator(SimulatorConfig(seed=44, employees=8, teams=2, learning=False,
                                    malformed_share=0.0, duplicate_share=0.05))
    emp = "emp-d"
    make, crafted = struggling(emp, 12)
    earlier = p.produce([(r.key, r.value) for r in (sim.next_record() for _ in range(150))])
    earlier += p.produce([(emp.encode(), v) for v in crafted])
    for s in earlier:
        oracle.feed(s)
    n_ok = oracle.outcomes[(topics.INTERACTIONS, "processed")]
    n_dup = oracle.outcomes[(topics.INTERACTIONS, "duplicate")]
    p.wait_events({"processed": n_ok, "duplicate": n_dup})
    p.reader.wait_for(oracle.counts(), "before the restart")
    check_outputs(p, oracle, earlier)
    emp_gaps = [g for g in oracle.records(topics.PERFORMANCE_GAPS) if g["employee_id"] == emp]
    assert [(g["standard"], g["status"]) for g in emp_gaps] == [("empathy", "opened")]
    before = ids(p)

    code = p.stop_worker()
    assert code == 0, f"worker did not stop cleanly on SIGTERM (exit {code}); {p.log_tail()}"
    # it committed what it had processed before leaving: the group's offsets are at the end
    ends: dict[int, int] = {}
    for s in earlier:
        ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    assert committed_offsets(p, topics.INTERACTIONS) == ends
    p.start_worker()  # same prefix, app id and data directory; state comes from the changelog

    # 1. all earlier input again: every record is a duplicate, nothing is published
    replay = p.produce([(s.key, s.value) for s in earlier])
    for s in replay:
        assert oracle.feed(s).outcome == "duplicate"
    # 2. then new input, with a record on every partition after the replayed ones, so that
    #    when the new records are out, every replayed record has been handled
    n_parts = p.partitions_of(topics.INTERACTIONS)
    fences: dict[int, str] = {}
    i = 0
    while len(fences) < n_parts:
        i += 1
        fences.setdefault(partition_for(f"emp-d-fence-{i}".encode(), n_parts),
                          f"emp-d-fence-{i}")
    later = p.produce([(e.encode(), InteractionMaker(e, start=DAY1)(csat=3))
                       for e in fences.values()])
    later += p.produce([(emp.encode(), make(fail=("empathy",), csat=5)) for _ in range(5)])
    later += p.produce([(r.key, r.value) for r in (sim.next_record() for _ in range(40))])
    known = {t: set(oracle.outputs.get(t, {})) for t in RECORD_TOPICS}
    later_outcomes = Counter(oracle.feed(s).outcome for s in later)
    new_records = {t: {i: v for i, v in oracle.outputs.get(t, {}).items() if i not in known[t]}
                   for t in RECORD_TOPICS}
    later_ok, later_dup = later_outcomes["processed"], later_outcomes["duplicate"]
    assert later_ok + later_dup == len(later)

    # (the new worker may also see again records the old one handled but had not committed:
    # more duplicates are fine, more processed records are not)
    events = p.wait_handled(len(replay) + len(later), what="the restarted worker")
    assert events["processed"] <= later_ok, f"a replayed record was processed again: {events}"
    events = p.wait_events({"processed": later_ok, "duplicate": len(replay) + later_dup},
                           what="the restarted worker")
    assert events["processed"] == later_ok, f"a replayed record was processed again: {events}"
    assert events["dead_lettered"] == events["forwarded"] == 0
    p.reader.wait_for(oracle.counts(), "after the restart")

    check_outputs(p, oracle, earlier + replay + later)
    after = ids(p)
    for t in RECORD_TOPICS:
        assert after[t] - before[t] == set(new_records[t]), t
        # what the new worker published is exactly the effect of the new records
        assert p.metric("frontline_records_out_total", topic=t) == len(new_records[t]), t

    # state continued: the open gap is not opened again, its lesson is not assigned again,
    # and the day's points cap counts the 120 points earned before the restart
    new_for_emp = {t: [json.loads(v) for v in new_records[t].values()
                       if json.loads(v)["employee_id"] == emp] for t in RECORD_TOPICS}
    assert len(new_for_emp[topics.EXECUTION_SCORES]) == 5
    assert new_for_emp[topics.PERFORMANCE_GAPS] == []
    assert new_for_emp[topics.LESSON_ASSIGNMENTS] == []
    assert [a["points"] for a in new_for_emp[topics.BONUS_AWARDS]] == [10, 10, 10]
    day_points = sum(o.json["points"] for o in p.reader.of(topics.BONUS_AWARDS)
                     if o.json["employee_id"] == emp)
    assert day_points == PLAYBOOK.limits.daily_points_cap

