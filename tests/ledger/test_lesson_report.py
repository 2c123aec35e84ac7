"""`frontline ledger lessons` on a small fixed ledger (SQLite and PostgreSQL) whose counts,
completion times and difference in differences are worked out by hand below."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from pathlib import Path

import pytest
from browser import external_references, render
from ledger.decisions import T0, assigned, effect, ended

from streams.cli import main
from streams.ledger_store import LedgerRecord, LedgerStore

DAY = timedelta(days=1)


def fixed_ledger() -> list[LedgerRecord]:
    """lesson-empathy (team-a): 7 assignments from T0 on, completed after 2, 5 and 30 hours,
    one expired, cancelled, superseded, one still open; and one older assignment and
    measurement (before T0) that --since leaves out. lesson-greeting (team-b): one assignment
    completed after 1 hour, one comparison measurement."""
    out: list[LedgerRecord] = []
    for n, (status, hours) in enumerate([("completed", 2), ("completed", 5), ("completed", 30),
                                         ("expired", 240), ("cancelled", 20),
                                         ("superseded", 50), (None, 0)], start=1):
        a = assigned(f"e{n}", employee_id=f"emp-{n % 2 + 1}", at=T0 + n * DAY)
        out.append(a)
        if status is not None:
            out.append(ended(a, status, hours=hours, completion_event_id=f"done-e{n}"))
    old = assigned("e0", at=T0 - 30 * DAY)
    out += [old, ended(old, "expired", hours=240)]
    out += [
        # lesson group: changes 7/10 - 2/10 = 0.5 and 6/10 - 3/10 = 0.3; the third has fewer
        # than 5 outcomes before and after (agents.lesson_effect.MIN_WINDOW): not used
        effect("m1", "lesson", (2, 10), (7, 10), at=T0 + 3 * DAY),
        effect("m2", "lesson", (3, 10), (6, 10), at=T0 + 4 * DAY, employee_id="emp-2"),
        effect("m3", "lesson", (1, 3), (3, 4), at=T0 + 4 * DAY),
        # comparison group: changes 0.0 and 0.2
        effect("m4", "comparison", (4, 10), (4, 10), at=T0 + 5 * DAY),
        effect("m5", "comparison", (3, 10), (5, 10), at=T0 + 6 * DAY),
        # before T0: change 1.0
        effect("m0", "lesson", (0, 10), (10, 10), at=T0 - 20 * DAY),
    ]
    g = assigned("g1", employee_id="emp-9", team_id="team-b", lesson_id="lesson-greeting",
                 standard="greeting", at=T0 + DAY)
    out += [g, ended(g, "completed", hours=1, completion_event_id="done-g1"),
            effect("m9", "comparison", (5, 10), (6, 10), lesson_id="lesson-greeting",
                   employee_id="emp-9", team_id="team-b", at=T0 + 2 * DAY)]
    return out


# By hand: lesson mean change (0.5 + 0.3) / 2 = 0.4, comparison (0.0 + 0.2) / 2 = 0.1, so the
# effect is 0.3. Each group's sample variance is 0.02 (two values 0.1 from their mean), over
# n = 2 gives 0.01; the interval is 0.3 -+ 1.959964 * sqrt(0.01 + 0.01) = 0.3 -+ 0.277181.
HALF = 1.959964 * math.sqrt(0.02)
EMPATHY = {"lesson_id": "lesson-empathy", "assignments": 7, "completed": 3, "expired": 1,
           "superseded": 1, "cancelled": 1, "open": 1,
           "completion_rate": 0.5,  # 3 completed of 6 ended
           "median_hours_to_complete": 5.0,  # of 2, 5, 30
           "n_lesson": 2, "n_comparison": 2, "lesson_change": 0.4, "comparison_change": 0.1,
           "effect": 0.3, "ci_low": round(0.3 - HALF, 4), "ci_high": round(0.3 + HALF, 4)}
GREETING = {"lesson_id": "lesson-greeting", "assignments": 1, "completed": 1, "expired": 0,
            "superseded": 0, "cancelled": 0, "open": 0, "completion_rate": 1.0,
            "median_hours_to_complete": 1.0, "n_lesson": 0, "n_comparison": 1,
            "lesson_change": None, "comparison_change": 0.1, "effect": None, "ci_low": None,
            "ci_high": None}


def _lessons(store: LedgerStore, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    store.write(fixed_ledger())
    url = store.engine.url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["ledger", "lessons", *args, "--database-url", url]) == 0
    return capsys.readouterr().out


def test_json_has_the_counts_times_and_effect_worked_out_by_hand(
        store: LedgerStore, capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(_lessons(store, capsys, "--since", "2026-11-02", "--format", "json"))
    assert out == {"lessons": [pytest.approx(EMPATHY), GREETING]}
    assert (EMPATHY["ci_low"], EMPATHY["ci_high"]) == (0.0228, 0.5772)


def test_filters_by_team_and_time(store: LedgerStore,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(_lessons(store, capsys, "--team", "team-b", "--format", "json"))
    assert out == {"lessons": [GREETING]}
    everything = json.loads(_lessons(store, capsys, "--format", "json"))["lessons"][0]
    # with the older assignment (expired) and measurement (change 1.0) from before T0
    assert (everything["assignments"], everything["expired"], everything["n_lesson"]) == \
        (8, 2, 3)
    assert everything["completion_rate"] == round(3 / 7, 4)
    assert everything["lesson_change"] == pytest.approx((0.5 + 0.3 + 1.0) / 3, abs=1e-4)


def test_text_is_an_aligned_table(store: LedgerStore,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    lines = _lessons(store, capsys, "--since", "2026-11-02").splitlines()
    header, empathy, greeting, count, *notes = lines
    assert re.split(r" {2,}", header) == [
        "lesson", "assignments", "completed", "expired", "superseded", "cancelled", "open",
        "completion", "median h", "effect", "95 % CI", "n lesson", "n comparison"]
    assert re.split(r" {2,}", empathy) == [
        "lesson-empathy", "7", "3", "1", "1", "1", "1", "50.0 %", "5.0", "+0.300",
        "[+0.023, +0.577]", "2", "2"]
    assert re.split(r" {2,}", greeting) == [
        "lesson-greeting", "1", "1", "0", "0", "0", "0", "100.0 %", "1.0", "-", "-", "0", "1"]
    assert len(header) == len(empathy) == len(greeting)  # numbers right-aligned in columns
    assert header.index("n comparison") + len("n comparison") == len(greeting)
    assert count == "(2 lessons)" and notes[0].startswith("completion: completed / ended")


def test_an_empty_ledger_says_so(store: LedgerStore,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    assert main(["ledger", "lessons", "--format", "json", "--database-url", url]) == 0
    assert json.loads(capsys.readouterr().out) == {"lessons": []}
    assert main(["ledger", "lessons", "--database-url", url]) == 0
    assert "(0 lessons)" in capsys.readouterr().out


def test_html_is_one_self_contained_page_with_charts_that_a_browser_renders(
        store: LedgerStore, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        chromium: str) -> None:
    page = tmp_path / "lessons.html"
    out = _lessons(store, capsys, "--since", "2026-11-02", "--format", "html",
                   "--output", str(page))
    assert out.strip() == f"wrote {page} (2 lessons)"
    html = page.read_text("utf-8")
    assert external_references(html) == []  # nothing fetched when it is opened
    assert "<script" not in html
    shown = render(chromium, page, tmp_path / "browser")
    dom = shown.dom
    # the effect chart: one point and one interval for the lesson with an estimate, and a
    # note for the one without
    assert dom.count('class="effect"') == 1 and dom.count('class="ci"') == 1
    assert "lesson-empathy: +0.300" in dom and "not enough measurements" in dom
    # the status chart: a bar per status present (empathy 5, greeting 1)
    assert dom.count('class="bar"') == 6
    assert "[+0.023, +0.577]" in dom  # the table
    # ... and it is really drawn: the screenshot has the chart colours, not a blank page
    assert shown.share_not_white() > 0.01
    assert shown.share_of((0x2E, 0x7D, 0x32)) > 0.0005  # completed bars
    assert shown.share_of((0x15, 0x65, 0xC0)) > 0.0001  # the interval / open bar


def test_html_output_to_a_folder_that_does_not_exist_is_one_line(
        store: LedgerStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    bad = tmp_path / "missing" / "lessons.html"
    code = main(["ledger", "lessons", "--format", "html", "--output", str(bad),
                 "--database-url", url])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"frontline ledger lessons: cannot write {bad}")
