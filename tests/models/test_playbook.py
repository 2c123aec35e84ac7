"""The shipped playbook, and bad playbooks refused with the right line and dotted field path."""

from __future__ import annotations

import re
import time

import pytest

from models.playbook import (
    MAX_PLAYBOOK_BYTES,
    MAX_YAML_NODES,
    Playbook,
    PlaybookError,
    load_playbook,
    parse_playbook,
)

NINE_STANDARDS = {
    "greeting", "verified_identity", "empathy", "accurate_info", "offered_more_help",
    "proper_closing", "hold_time", "customer_satisfaction", "first_contact_resolution",
}

# Line numbers below refer to this text; keep it free of leading comments.
GOOD = """\
version: "t1"
timezone: UTC
evidence:
  shortfall: 0.15
  false_gap_rate: 0.04
standards:
  greeting:
    title: Greets
    check: {field: qa.greeting, op: is_true}
    target: 0.9
    lesson: warm
  hold:
    title: Hold
    check:
      field: hold_s
      op: le
      value: 60
    target: 0.8
    lesson: warm
lessons:
  warm: {title: Warm greeting}
"""


def _error(text: str, source: str = "pb.yaml") -> str:
    with pytest.raises(PlaybookError) as exc:
        parse_playbook(text, source)
    message = str(exc.value)
    assert "\n" not in message
    return message


def _where(message: str) -> tuple[str, int, str]:
    """(source, line, field) of a PlaybookError message 'source:line: field: reason'."""
    m = re.match(r"^(?P<src>[^:]+):(?P<line>\d+): (?P<field>[\w.()\- ]+): ", message)
    assert m, message
    return m["src"], int(m["line"]), m["field"]


def _replace(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


# ---- the shipped playbook -------------------------------------------------------------------


def test_shipped_playbook_has_the_nine_standards_each_with_a_lesson():
    pb = load_playbook()
    assert isinstance(pb, Playbook)
    assert set(pb.standards) == NINE_STANDARDS
    for name, std in pb.standards.items():
        assert std.lesson in pb.lessons, name
        assert 0 < std.target < 1
        assert std.weight > 0
        assert pb.lessons[std.lesson].title


def test_shipped_playbook_settings():
    pb = load_playbook()
    assert pb.version == "2026.12.1"
    assert pb.timezone == "UTC"
    assert (pb.evidence.shortfall, pb.evidence.false_gap_rate) == (0.15, 0.045)
    assert (pb.evidence.per_interactions, pb.evidence.false_close_rate) == (200, 0.01)
    assert pb.evidence.effect_window == 20
    assert pb.limits.lesson_grace_days == 3
    assert pb.standards["hold_time"].channels == ["voice", "chat"]
    assert pb.standards["hold_time"].check.op == "le"
    assert pb.standards["hold_time"].check.value == 60
    assert pb.standards["customer_satisfaction"].check.field == "csat"
    assert pb.standards["first_contact_resolution"].check.field == "resolved"
    assert pb.rewards.delighted_customer is not None
    assert pb.rewards.delighted_customer.points == 10
    assert pb.limits.max_open_lessons == 2
    assert pb.limits.daily_points_cap == 150


def test_load_playbook_from_a_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD, "utf-8")
    pb = load_playbook(path)
    assert pb.version == "t1"
    assert set(pb.standards) == {"greeting", "hold"}
    assert pb.standards["hold"].check.value == 60.0


def test_a_playbook_of_the_rolling_window_rule_is_refused_with_what_to_change():
    message = _error(_replace("  shortfall: 0.15\n", "  window: 20\n  min_sample: 10\n"))
    _, line, field = _where(message)
    assert (line, field) == (4, "evidence.window"), message
    assert "replaced by a sequential test" in message
    assert "set evidence.shortfall and evidence.false_gap_rate" in message


def test_a_shortfall_that_leaves_no_rate_to_detect_is_refused():
    message = _error(_replace("    target: 0.8\n", "    target: 0.8\n    shortfall: 0.8\n"))
    assert _where(message)[2] == "standards.hold.target", message
    assert "lower the shortfall" in message


def test_good_fixture_parses():
    assert parse_playbook(GOOD).standards["greeting"].target == 0.9


# ---- bad playbooks --------------------------------------------------------------------------


@pytest.mark.parametrize("text,line,field,reason", [
    pytest.param(_replace("target: 0.9", "target: 1.5"), 10, "standards.greeting.target",
                 "less than 1", id="target-above-1"),
    pytest.param(_replace("target: 0.8", "target: 0"), 18, "standards.hold.target",
                 "greater than 0", id="target-zero"),
    pytest.param(_replace("lesson: warm\n  hold", "lesson: nope\n  hold"), 11,
                 "standards.greeting.lesson", "lesson 'nope' is not defined", id="unknown-lesson"),
    pytest.param(_replace("field: qa.greeting", "field: bogus"), 9, "standards.greeting.check",
                 "unknown field 'bogus'", id="unknown-check-field"),
    pytest.param(_replace("op: le", "op: is_true").replace("      value: 60\n", ""), 14,
                 "standards.hold.check", "is_true needs a yes/no field", id="is-true-on-number"),
    pytest.param(_replace("      value: 60\n", ""), 14, "standards.hold.check",
                 "op le needs a value", id="le-without-value"),
    pytest.param(_replace("false_gap_rate: 0.04", "false_gap_rate: 0.5"), 5,
                 "evidence.false_gap_rate", "less than or equal to 0.2", id="false-gap-rate-high"),
    pytest.param(_replace("timezone: UTC", "timezone: Mars/Olympus_Mons"), 2, "timezone",
                 "unknown time zone 'Mars/Olympus_Mons'", id="unknown-zone"),
    pytest.param(_replace("  false_gap_rate: 0.04\n", "  false_gap_rate: 0.04\n  bogus: 1\n"), 6,
                 "evidence.bogus", "Extra inputs are not permitted", id="extra-nested-key"),
    pytest.param(_replace("    target: 0.9\n", "    target: 0.9\n    colour: red\n"), 11,
                 "standards.greeting.colour", "Extra inputs", id="extra-standard-key"),
    pytest.param(GOOD + "colour: red\n", 22, "colour", "Extra inputs", id="extra-top-key"),
    pytest.param(_replace('version: "t1"\n', ""), 1, "version", "Field required",
                 id="missing-version"),
    pytest.param(GOOD.split("standards:")[0] + "standards: {}\nlessons: {}\n", 6, "standards",
                 "at least 1 item", id="empty-standards"),
    pytest.param(_replace("warm: {title: Warm greeting}", "warm: {minutes: 5}"), 21,
                 "lessons.warm.title", "Field required", id="lesson-without-title"),
    pytest.param(_replace("value: 60", "value: lots"), 17, "standards.hold.check.value",
                 "valid number", id="non-numeric-value"),
])
def test_bad_playbook_names_line_and_field(text, line, field, reason):
    message = _error(text)
    src, got_line, got_field = _where(message)
    assert (src, got_line, got_field) == ("pb.yaml", line, field), message
    assert reason in message


def test_only_first_error_is_detailed_and_the_rest_counted():
    text = _replace("target: 0.9", "target: 1.5").replace("target: 0.8", "target: 2")
    message = _error(text)
    assert _where(message)[1:] == (10, "standards.greeting.target")
    assert message.endswith("(and 1 more)")


def test_invalid_yaml_names_the_line():
    message = _error(_replace("target: 0.8", "target: 0.8: oops"))
    assert message.startswith("pb.yaml:18: not valid YAML: ")
    assert "mapping values are not allowed" in message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just words\n", "42\n", "null\n"])
def test_not_a_mapping_is_refused(text):
    message = _error(text)
    assert message.startswith("pb.yaml:1: ")
    assert "mapping" in message


def test_bad_playbook_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_replace("target: 0.9", "target: 1.5"), "utf-8")
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    assert str(exc.value).startswith(f"{path}:10: standards.greeting.target: ")


def test_missing_playbook_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "nowhere" / "playbook.yaml"
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    message = str(exc.value)
    assert message == f"{path}: cannot read playbook: No such file or directory"
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_playbook_error_is_a_value_error():
    assert issubclass(PlaybookError, ValueError)


# ---- files that are not a playbook, refused cheaply -----------------------------------------


def _load_error(path) -> str:
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_file_that_is_not_utf8_names_its_line_and_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("Warm greeting", "Caf\xe9 greeting").encode("latin-1"))
    offset = GOOD.index("Warm greeting") + 3
    line = GOOD[:offset].count("\n") + 1
    assert _load_error(path) == (f"{path}:{line}: not UTF-8 text: byte 0xe9 at offset "
                                 f"{offset}; save the playbook as UTF-8")


def test_a_utf16_file_is_refused_at_its_first_byte(tmp_path):
    path = tmp_path / "notepad.yaml"
    path.write_bytes(GOOD.encode("utf-16"))
    assert _load_error(path).startswith(f"{path}:1: not UTF-8 text: byte 0xff at offset 0")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(GOOD.encode("utf-8-sig"))
    assert load_playbook(path).version == "t1"


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + "# " + "x" * MAX_PLAYBOOK_BYTES + "\n", "utf-8")
    started = time.monotonic()
    assert "too large for a playbook" in _load_error(path)
    assert time.monotonic() - started < 1


def test_an_endless_file_is_refused(tmp_path):
    assert "/dev/zero: more than 1 MB" in _load_error("/dev/zero")


def test_a_folder_is_refused(tmp_path):
    assert _load_error(tmp_path) == f"{tmp_path}: cannot read playbook: Is a directory"


def _alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it():
    started = time.monotonic()
    message = _error(_alias_bomb(10))  # 9 ** 10 strings once expanded
    assert message == ("pb.yaml: YAML anchors and aliases expand to more than "
                       f"{MAX_YAML_NODES:,} values; write the playbook out without them")
    assert time.monotonic() - started < 1


def test_an_alias_inside_its_own_anchor_is_refused():
    assert _error("version: &v [1, *v]\n") == "pb.yaml:1: a YAML alias refers to its own anchor"


def test_anchors_and_aliases_in_a_real_playbook_still_work():
    text = _replace("    check: {field: qa.greeting, op: is_true}\n",
                    "    check: &qa {field: qa.greeting, op: is_true}\n")
    text = text.replace("lessons:\n", "  again:\n    title: Again\n    check: *qa\n"
                        "    target: 0.9\n    lesson: warm\nlessons:\n")
    assert parse_playbook(text).standards["again"].check.field == "qa.greeting"


def test_nesting_too_deep_is_one_line():
    assert _error("x: " + "[" * 100_000 + "]" * 100_000 + "\n") == (
        "pb.yaml: not a playbook: nested too deeply")
