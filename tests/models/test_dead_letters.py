"""Dead letters: one readable reason per refused input record, and the headers that carry it."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from models import dead_letters
from models.dead_letters import (
    Refusal,
    dead_letter_id,
    explain_validation,
    headers,
    identity_headers,
)
from models.events import Interaction, LessonCompletion


def _refusal(raw: bytes, model: type = Interaction) -> Refusal:
    with pytest.raises(ValidationError) as exc:
        model.model_validate_json(raw)
    return explain_validation(exc.value)


@pytest.mark.parametrize("raw", [b"", b"not json", b"{\"event_id\": ", b"\xff\xfe"])
def test_not_json(raw):
    refusal = _refusal(raw)
    assert refusal.error_type == dead_letters.NOT_JSON == "not_json"
    assert refusal.message.startswith("value is not valid UTF-8 JSON: ")


@pytest.mark.parametrize("raw", [b"[1, 2]", b"42", b'"an interaction"', b"null", b"false"])
def test_not_an_object(raw):
    refusal = _refusal(raw)
    assert refusal == Refusal("not_an_object", "value is JSON but not an object")


def test_not_an_object_for_completions_too():
    assert _refusal(b"[]", LessonCompletion).error_type == "not_an_object"


def test_invalid_event_names_the_field_and_the_value(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(csat=6)))
    assert refusal.error_type == "invalid_event"
    assert refusal.message == "csat: Input should be less than or equal to 5 (got 6)"


def test_invalid_event_missing_field_has_no_got(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(drop=("employee_id",))))
    assert refusal == Refusal("invalid_event", "employee_id: Field required")


def test_invalid_event_nested_field_is_dotted(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(qa={"greeting": "yes"})))
    assert refusal.error_type == "invalid_event"
    assert refusal.message.startswith("qa.greeting: Input should be a valid boolean")
    assert refusal.message.endswith('(got "yes")')


def test_invalid_event_record_level_error(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(ended_at="2026-03-02T09:00:00+00:00")))
    assert refusal == Refusal("invalid_event", "(record): ended_at is before started_at")


def test_invalid_event_lists_three_errors_and_counts_the_rest(interaction_dict, as_json):
    record = interaction_dict(wait_s=-1, talk_s=-1, hold_s=-1, wrap_s=-1, transfers=-1)
    refusal = _refusal(as_json(record))
    assert refusal.error_type == "invalid_event"
    parts = refusal.message.split("; ")
    assert [p.split(":")[0] for p in parts] == ["wait_s", "talk_s", "hold_s", "and 2 more"]


def test_long_input_is_shortened_in_the_message(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(channel="x" * 1000)))
    assert refusal.error_type == "invalid_event"
    assert refusal.message.startswith("channel: ")
    assert len(refusal.message) < 200


@pytest.mark.parametrize("version", [2, "1", None])
def test_unsupported_schema_version(interaction_dict, as_json, version):
    refusal = _refusal(as_json(interaction_dict(schema_version=version)))
    assert refusal.error_type == "unsupported_schema_version"
    assert refusal.message == f"schema_version {version!r} is not supported (expected 1)"


def test_schema_version_wins_over_other_errors(interaction_dict, as_json):
    record = interaction_dict(drop=("employee_id",), schema_version=2, csat=9)
    assert _refusal(as_json(record)).error_type == "unsupported_schema_version"


def test_headers():
    refusal = Refusal("invalid_event", "csat: too high")
    assert headers(refusal, "interactions", 3, 12345) == [
        ("frontline.source.topic", b"interactions"),
        ("frontline.source.partition", b"3"),
        ("frontline.source.offset", b"12345"),
        ("frontline.dead-letter.id", dead_letter_id("interactions", 3, 12345).encode()),
        ("frontline.error.type", b"invalid_event"),
        ("frontline.error.message", b"csat: too high"),
    ]


def test_dead_letter_id_is_stable_per_source_record_and_differs_between_records():
    first = dead_letter_id("interactions", 3, 12345)
    assert first == dead_letter_id("interactions", 3, 12345)  # a second dead letter of it
    assert len(first) == 32 and int(first, 16) >= 0
    others = {dead_letter_id("interactions", 3, 12346), dead_letter_id("interactions", 4, 12345),
              dead_letter_id("lesson-completions", 3, 12345), dead_letter_id("interactions", 31, 2345)}
    assert first not in others and len(others) == 4


def test_identity_headers_give_the_size_and_sha256_of_the_original():
    original = b"x" * 1_100_000
    assert identity_headers("value", original) == [
        ("frontline.original.value-size", b"1100000"),
        ("frontline.original.value-sha256", hashlib.sha256(original).hexdigest().encode()),
    ]
    assert [name for name, _ in identity_headers("key", b"k")] == [
        "frontline.original.key-size", "frontline.original.key-sha256"]


def test_header_message_is_utf8_and_capped_at_500_characters():
    refusal = Refusal("invalid_event", "é" * 600)
    value = dict(headers(refusal, "t", 0, 0))["frontline.error.message"]
    assert value.decode("utf-8") == "é" * 500


@pytest.mark.parametrize("version", [True, 1.0, False, [1]])
def test_schema_version_of_another_json_type_is_unsupported(interaction_dict, as_json, version):
    refusal = _refusal(as_json(interaction_dict(schema_version=version)))
    assert refusal == Refusal("unsupported_schema_version",
                              f"schema_version {version!r} is not supported (expected 1)")


def test_a_huge_refused_value_is_shown_shortly(interaction_dict, as_json):
    refusal = _refusal(as_json(interaction_dict(qa={f"item-{i}": True for i in range(50_000)})))
    assert refusal.error_type == "invalid_event"
    assert refusal.message.startswith("qa: Dictionary should have at most 200 items")
    assert len(refusal.message) < 200
    huge_version = _refusal(as_json(interaction_dict(schema_version=["x" * 1000] * 1000)))
    assert huge_version.error_type == "unsupported_schema_version"
    assert len(huge_version.message) < 200


def test_error_types_are_all_distinct():
    assert len(set(dead_letters.ERROR_TYPES)) == len(dead_letters.ERROR_TYPES) == 9
    assert {"not_json", "not_an_object", "invalid_event", "unsupported_schema_version",
            "implausible_time", "too_late", "rejected", "output_too_large",
            "internal_error"} == set(dead_letters.ERROR_TYPES)


def test_the_module_docstring_documents_every_header_and_error_type():
    doc = dead_letters.__doc__ or ""
    names = [v for k, v in vars(dead_letters).items() if k.startswith("H_")]
    assert len(names) == 12
    for name in names + list(dead_letters.ERROR_TYPES):
        assert f"`{name}`" in doc, name
