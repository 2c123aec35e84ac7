"""`frontline ledger` on the command line: schema handling and usage errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from ledger.decisions import assigned, ended

from streams.cli import main
from streams.ledger_schema import create_ledger_engine
from streams.ledger_store import LedgerStore


def test_the_writer_refuses_an_out_of_date_schema_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert main(["ledger", "run", "--broker", "kafka://127.0.0.1:1", "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "no schema yet: run `frontline ledger migrate`" in err
    assert main(["ledger", "migrate", "--database-url", url]) == 0
    assert "revision 0004" in capsys.readouterr().out
    assert main(["ledger", "migrate", "--database-url", url]) == 0  # again: nothing to do
    assert main(["ledger", "balance", "nobody", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "points by day: none" in out and "open lessons: 0 assigned, 0 overdue" in out


@pytest.mark.parametrize("status", ["assigned", "overdue", "completed", "expired",
                                    "superseded", "cancelled"])
def test_assignments_can_be_listed_by_every_status(
        status: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert main(["ledger", "migrate", "--database-url", url]) == 0
    a = assigned("a-1")
    records = [a] if status in ("assigned", "overdue") else [a, ended(a, status)]
    store = LedgerStore(create_ledger_engine(url))
    store.write(records)
    if status == "overdue":
        store.sweep_overdue(a.due_at + timedelta(hours=1))
    store.engine.dispose()
    capsys.readouterr()
    assert main(["ledger", "assignments", "--status", status, "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "(1 assignments)" in out and f" {status} " in out


@pytest.mark.parametrize("argv", [
    ["ledger"],
    ["ledger", "export", "--format", "xml"],
    ["ledger", "awards", "--since", "yesterday"],
    ["ledger", "balance", "e1", "--team", "t1"],
    ["ledger", "lessons", "--format", "html"],
    ["ledger", "lessons", "--since", "last week"],
    ["ledger", "assignments", "--status", "done"],
])
def test_bad_ledger_arguments_exit_2_with_one_line(argv: list[str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--database-url", f"sqlite:///{tmp_path / 'l.sqlite'}"]
                if len(argv) > 1 else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err
