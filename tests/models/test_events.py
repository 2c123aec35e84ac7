"""The input contract is strict (no coercion) and the output records round-trip through JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from models.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    BonusAward,
    Evidence,
    ExecutionScore,
    Interaction,
    LessonAssignment,
    LessonCompletion,
    PerformanceGap,
    StandardResult,
    json_schemas,
    record_id,
)

REQUIRED_INTERACTION_FIELDS = (
    "event_id", "interaction_id", "employee_id", "team_id", "channel", "started_at", "ended_at",
    "wait_s", "talk_s", "hold_s", "wrap_s", "transfers",
)


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


# ---- Interaction: accepted ------------------------------------------------------------------


def test_minimal_interaction_is_accepted_with_defaults(interaction_dict, as_json):
    ev = Interaction.model_validate_json(as_json(interaction_dict()))
    assert ev.event_id == "evt-1"
    assert ev.employee_id == "emp-1"
    assert ev.channel == "voice"
    assert ev.started_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert ev.ended_at - ev.started_at == timedelta(minutes=7, seconds=30)
    assert ev.wait_s == 12.0 and isinstance(ev.wait_s, float)  # int is fine for a float field
    assert ev.talk_s == 390.5
    assert ev.transfers == 0
    assert ev.schema_version == 1
    assert ev.resolved is None
    assert ev.qa == {}
    assert ev.csat is None and ev.nps is None and ev.sentiment is None


def test_full_interaction_keeps_every_value(interaction_dict, as_json):
    record = interaction_dict(
        schema_version=1, channel="email", resolved=False, csat=5, nps=0, sentiment=-0.25,
        qa={"greeting": True, "empathy": False}, transfers=2,
        started_at="2026-03-02T10:00:00-05:00", ended_at="2026-03-02T11:00:00-05:00",
    )
    ev = Interaction.model_validate_json(as_json(record))
    assert ev.channel == "email"
    assert ev.resolved is False
    assert (ev.csat, ev.nps, ev.sentiment, ev.transfers) == (5, 0, -0.25, 2)
    assert ev.qa == {"greeting": True, "empathy": False}
    assert ev.started_at.utcoffset() == timedelta(hours=-5)
    assert ev.ended_at == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("channel", ["voice", "chat", "email", "messaging"])
def test_every_channel_is_accepted(interaction_dict, as_json, channel):
    assert Interaction.model_validate_json(as_json(interaction_dict(channel=channel))).channel \
        == channel


@pytest.mark.parametrize("field,value", [
    ("csat", 1), ("csat", 5), ("nps", 0), ("nps", 10), ("sentiment", -1), ("sentiment", 1.0),
    ("hold_s", 0), ("transfers", 0),
])
def test_range_edges_are_accepted(interaction_dict, as_json, field, value):
    ev = Interaction.model_validate_json(as_json(interaction_dict(**{field: value})))
    assert getattr(ev, field) == value


def test_unknown_extra_fields_are_ignored(interaction_dict, as_json):
    record = interaction_dict(agent_mood="sunny", nested={"x": [1, 2]}, csat=4)
    ev = Interaction.model_validate_json(as_json(record))
    assert ev.csat == 4
    assert not hasattr(ev, "agent_mood")
    assert "agent_mood" not in ev.model_dump()


def test_ended_at_equal_to_started_at_is_accepted(interaction_dict, as_json):
    record = interaction_dict(ended_at="2026-03-02T10:00:00+00:00")
    ev = Interaction.model_validate_json(as_json(record))
    assert ev.ended_at == ev.started_at


# ---- Interaction: refused -------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("wait_s", "12"),            # string for a number
    ("talk_s", "390.5"),
    ("transfers", "0"),
    ("csat", "5"),
    ("csat", 5.0),               # float for an int
    ("transfers", 1.0),
    ("nps", 7.0),
    ("csat", True),              # bool for an int
    ("transfers", False),
    ("wait_s", True),            # bool for a float
    ("resolved", 1),             # int for a bool
    ("resolved", "true"),
    ("qa", {"greeting": "yes"}),
    ("qa", ["greeting"]),
    ("event_id", 17),            # number for a string
    ("employee_id", None),
    ("started_at", 1772445600),  # epoch number for a datetime
])
def test_wrong_types_are_refused_not_coerced(interaction_dict, as_json, field, value):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(**{field: value})))
    assert _error_locs(exc)[0][0] == field


@pytest.mark.parametrize("field,value", [
    ("csat", 0), ("csat", 6), ("nps", -1), ("nps", 11), ("sentiment", 1.5), ("sentiment", -1.01),
    ("wait_s", -0.5), ("talk_s", -1), ("hold_s", -1), ("wrap_s", -3), ("transfers", -1),
    ("event_id", ""), ("employee_id", "x" * 201),
])
def test_out_of_range_values_are_refused(interaction_dict, as_json, field, value):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(**{field: value})))
    assert _error_locs(exc) == [(field,)]


@pytest.mark.parametrize("field", REQUIRED_INTERACTION_FIELDS)
def test_each_required_field_is_required(interaction_dict, as_json, field):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(drop=(field,))))
    errors = exc.value.errors()
    assert [(e["type"], tuple(e["loc"])) for e in errors] == [("missing", (field,))]


@pytest.mark.parametrize("field", ["started_at", "ended_at"])
def test_naive_datetime_is_refused(interaction_dict, as_json, field):
    record = interaction_dict(**{field: "2026-03-02T10:05:00"})
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(record))
    assert exc.value.errors()[0]["type"] == "timezone_aware"
    assert _error_locs(exc)[0] == (field,)


@pytest.mark.parametrize("ended_at", [
    "2026-03-02T09:59:59+00:00",
    "2026-03-02T10:30:00+01:00",  # later wall clock, earlier instant
])
def test_ended_before_started_is_refused(interaction_dict, as_json, ended_at):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(ended_at=ended_at)))
    assert "ended_at is before started_at" in str(exc.value)


@pytest.mark.parametrize("channel", ["fax", "Voice", "", "phone"])
def test_unknown_channel_is_refused(interaction_dict, as_json, channel):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(channel=channel)))
    assert _error_locs(exc) == [("channel",)]


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_other_schema_versions_are_refused(interaction_dict, as_json, version):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(schema_version=version)))
    assert _error_locs(exc)[0] == ("schema_version",)


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff\xfe\x00", b"{'event_id': 1}"])
def test_non_json_bytes_are_refused(raw):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(raw)
    assert exc.value.errors()[0]["type"] == "json_invalid"


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"text"', b"null", b"true"])
def test_json_that_is_not_an_object_is_refused(raw):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(raw)
    assert exc.value.errors()[0]["loc"] == ()


def test_interaction_is_immutable(interaction_dict, as_json):
    ev = Interaction.model_validate_json(as_json(interaction_dict()))
    with pytest.raises(ValidationError):
        ev.csat = 5  # type: ignore[misc]


# ---- Interaction: the edges of every field ---------------------------------------------------


@pytest.mark.parametrize("version", [True, False, 1.0, "1", None, [1], {"v": 1}])
def test_schema_version_must_be_the_json_integer_1(interaction_dict, as_json, version):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(schema_version=version)))
    assert _error_locs(exc) == [("schema_version",)]


@pytest.mark.parametrize("field", ["wait_s", "talk_s", "hold_s", "wrap_s", "sentiment"])
@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_numbers_must_be_finite(interaction_dict, as_json, field, number):
    raw = as_json(interaction_dict(**{field: 123456789})).replace(b"123456789", number)
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(raw)
    assert _error_locs(exc) == [(field,)]
    assert exc.value.errors()[0]["type"] in ("finite_number", "less_than_equal",
                                            "greater_than_equal")


@pytest.mark.parametrize("field", ["wait_s", "talk_s", "hold_s", "wrap_s"])
def test_durations_are_at_most_31_days(interaction_dict, as_json, field):
    month = 31 * 86400
    ok = Interaction.model_validate_json(as_json(interaction_dict(**{field: month})))
    assert getattr(ok, field) == month
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(**{field: month + 0.5})))
    assert _error_locs(exc) == [(field,)]


def test_a_contact_lasts_at_most_31_days(interaction_dict, as_json):
    ok = interaction_dict(started_at="2026-01-01T00:00:00+00:00",
                          ended_at="2026-02-01T01:00:00+01:00")  # 31 days exactly
    assert Interaction.model_validate_json(as_json(ok)).ended_at.day == 1
    longer = interaction_dict(started_at="2026-01-01T00:00:00+00:00",
                              ended_at="2026-02-01T00:00:01+00:00")
    with pytest.raises(ValidationError, match="more than 31 days after started_at"):
        Interaction.model_validate_json(as_json(longer))


@pytest.mark.parametrize("field", ["started_at", "ended_at"])
@pytest.mark.parametrize("at", [
    "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59-05:00",  # past year 9999 in UTC: overflowed before
    "0001-01-01T01:00:00+05:00",  # before year 1 in UTC: overflowed before
    "1999-12-31T23:59:59+00:00",
    "2000-01-01T00:30:00+01:00",  # 1999 in UTC
    "2100-01-01T00:00:00+00:00",
    "2099-12-31T20:00:00-05:00",  # 2100 in UTC
])
def test_event_times_outside_2000_to_2100_utc_are_refused(interaction_dict, as_json, field, at):
    record = interaction_dict(started_at="2026-03-02T10:00:00+00:00",
                              ended_at="2026-03-02T10:07:30+00:00")
    record[field] = at
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(record))
    assert _error_locs(exc)[0] == (field,)
    assert exc.value.errors()[0]["msg"] in (
        "Input should be greater than or equal to 2000-01-01T00:00:00Z",
        "Input should be less than 2100-01-01T00:00:00Z")


@pytest.mark.parametrize("at", ["2000-01-01T00:00:00+00:00", "2000-01-01T05:00:00+05:00",
                                "2099-12-31T23:59:59+00:00", "2099-12-31T23:59:59+14:00"])
def test_event_times_at_the_edges_of_the_range_are_accepted(interaction_dict, as_json, at):
    ev = Interaction.model_validate_json(as_json(interaction_dict(started_at=at, ended_at=at)))
    assert EARLIEST_EVENT_TIME <= ev.ended_at < LATEST_EVENT_TIME


@pytest.mark.parametrize("qa,loc", [
    ({f"item-{i}": True for i in range(201)}, ("qa",)),
    ({"x" * 201: True}, ("qa", "x" * 201, "[key]")),
    ({"": True}, ("qa", "", "[key]")),
])
def test_qa_is_bounded(interaction_dict, as_json, qa, loc):
    with pytest.raises(ValidationError) as exc:
        Interaction.model_validate_json(as_json(interaction_dict(qa=qa)))
    assert _error_locs(exc)[0] == loc


def test_qa_within_bounds_is_accepted(interaction_dict, as_json):
    qa = {f"item-{i}": i % 2 == 0 for i in range(200)}
    assert Interaction.model_validate_json(as_json(interaction_dict(qa=qa))).qa == qa


@pytest.mark.parametrize("raw_transfers", [b"1001", b"1" + b"0" * 30, b"9" * 5000])
def test_transfers_are_bounded(interaction_dict, as_json, raw_transfers):
    raw = as_json(interaction_dict(transfers=123456789)).replace(b"123456789", raw_transfers)
    with pytest.raises(ValidationError):
        Interaction.model_validate_json(raw)


# ---- LessonCompletion -----------------------------------------------------------------------


def test_minimal_completion_is_accepted(completion_dict, as_json):
    ev = LessonCompletion.model_validate_json(as_json(completion_dict()))
    assert ev.assignment_id == "asg-1"
    assert ev.lesson_id is None and ev.score is None
    assert ev.completed_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)


def test_full_completion_ignores_extra_fields(completion_dict, as_json):
    ev = LessonCompletion.model_validate_json(
        as_json(completion_dict(lesson_id="warm-greeting", score=87.5, device="mobile")))
    assert (ev.lesson_id, ev.score) == ("warm-greeting", 87.5)


@pytest.mark.parametrize("changes,loc", [
    ({"score": 101}, ("score",)),
    ({"score": -1}, ("score",)),
    ({"score": "90"}, ("score",)),
    ({"completed_at": "2026-03-03T08:00:00"}, ("completed_at",)),
    ({"assignment_id": ""}, ("assignment_id",)),
    ({"lesson_id": 3}, ("lesson_id",)),
    ({"schema_version": 2}, ("schema_version",)),
])
def test_bad_completions_are_refused(completion_dict, as_json, changes, loc):
    with pytest.raises(ValidationError) as exc:
        LessonCompletion.model_validate_json(as_json(completion_dict(**changes)))
    assert _error_locs(exc)[0] == loc


@pytest.mark.parametrize("field", ["event_id", "assignment_id", "employee_id", "completed_at"])
def test_completion_required_fields(completion_dict, as_json, field):
    with pytest.raises(ValidationError) as exc:
        LessonCompletion.model_validate_json(as_json(completion_dict(drop=(field,))))
    assert [(e["type"], tuple(e["loc"])) for e in exc.value.errors()] == [("missing", (field,))]


@pytest.mark.parametrize("changes,loc", [
    ({"completed_at": "9999-12-31T23:59:59-05:00"}, ("completed_at",)),
    ({"completed_at": "0001-01-01T01:00:00+05:00"}, ("completed_at",)),
    ({"completed_at": "1970-01-01T00:00:00+00:00"}, ("completed_at",)),
    ({"schema_version": True}, ("schema_version",)),
    ({"schema_version": 1.0}, ("schema_version",)),
    ({"lesson_id": ""}, ("lesson_id",)),
    ({"employee_id": "e" * 201}, ("employee_id",)),
])
def test_completion_edges_are_refused(completion_dict, as_json, changes, loc):
    with pytest.raises(ValidationError) as exc:
        LessonCompletion.model_validate_json(as_json(completion_dict(**changes)))
    assert _error_locs(exc)[0] == loc


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"1e400"])
def test_completion_score_must_be_finite(completion_dict, as_json, number):
    raw = as_json(completion_dict(score=12345)).replace(b"12345", number)
    with pytest.raises(ValidationError) as exc:
        LessonCompletion.model_validate_json(raw)
    assert _error_locs(exc) == [("score",)]


# ---- output records -------------------------------------------------------------------------

AT = datetime(2026, 3, 2, 10, 7, 30, tzinfo=UTC)
BASE = {"employee_id": "emp-1", "team_id": "team-a", "playbook_version": "2026.11.1", "at": AT}
EVIDENCE = Evidence(interaction_ids=["int-1", "int-2"], statistic="wilson_upper_bound",
                    value=0.6484, threshold=0.8, passes=4, sample=10, confidence=0.95,
                    detail="upper bound below target")


def _outputs():
    return [
        ExecutionScore(event_id="evt-1", interaction_id="int-1", channel="voice", score=83.33,
                       results=[StandardResult(standard="greeting", outcome="pass", weight=1.0),
                                StandardResult(standard="csat", outcome="not_applicable",
                                               weight=1.5)],
                       **BASE),
        ExecutionScore(event_id="evt-2", interaction_id="int-2", channel="email", score=None,
                       results=[], **BASE),
        PerformanceGap(gap_id="gap-1", standard="empathy", status="opened", target=0.8,
                       evidence=EVIDENCE, **BASE),
        LessonAssignment(assignment_id="asg-1", lesson_id="empathy-statements",
                         lesson_title="Empathy", standard="empathy", gap_id="gap-1",
                         due_at=AT + timedelta(days=5), evidence=EVIDENCE, **BASE),
        BonusAward(award_id="awd-1", rule="delighted_customer", points=7, requested_points=10,
                   period="2026-03-02", evidence=EVIDENCE, **BASE),
    ]


@pytest.mark.parametrize("record", _outputs(), ids=lambda r: type(r).__name__)
def test_output_records_round_trip_through_json(record):
    text = record.model_dump_json()
    back = type(record).model_validate_json(text)
    assert back == record
    assert back.model_dump_json() == text
    assert back.at == AT and back.at.utcoffset() == timedelta(0)


def test_output_record_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        BonusAward(award_id="a", rule="r", points=1, requested_points=1, period="2026-03-02",
                   evidence=EVIDENCE, bogus=1, **BASE)


def test_non_utc_event_time_survives_round_trip():
    plus2 = timezone(timedelta(hours=2))
    record = _outputs()[0].model_copy(update={"at": AT.astimezone(plus2)})
    back = ExecutionScore.model_validate_json(record.model_dump_json())
    assert back.at == AT and back.at.utcoffset() == timedelta(hours=2)


def test_record_id_of_each_output_type():
    score, empty_score, gap, assignment, award = _outputs()
    assert record_id(score) == "evt-1"
    assert record_id(empty_score) == "evt-2"
    assert record_id(gap) == "gap-1:opened"
    assert record_id(gap.model_copy(update={"status": "closed"})) == "gap-1:closed"
    assert record_id(assignment) == "asg-1"
    assert record_id(award) == "awd-1"


def test_json_schemas_cover_the_contract():
    schemas = json_schemas()
    assert set(schemas) == {"Interaction", "LessonCompletion", "ExecutionScore", "PerformanceGap",
                            "LessonAssignment", "BonusAward", "LessonEffect"}
    assert set(schemas["Interaction"]["required"]) == set(REQUIRED_INTERACTION_FIELDS)
