"""`frontline demo` as a user runs it: a real subprocess that starts its own broker and worker,
streams simulated traffic, prints a summary table and stops everything it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.embedded_broker import free_port, port_in_use

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 120.0
ROWS = ("interactions sent", "execution scores", "duplicates recognised", "dead letters",
        "gaps opened", "gaps to employees truly below target", "gaps to employees at/above target",
        "pairs truly below target at end", "pairs a shortfall below target at end",
        "lessons assigned", "bonus awards", "points awarded")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def _children(parent: int) -> dict[tuple[int, int], str]:
    """Live children of `parent`: (pid, start time) -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[0] != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found[(int(entry.name), stat[2])] = cmdline
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[1] != "Z"


def _rows(text: str) -> dict[str, int]:
    """The summary table: row name -> count."""
    rows = {}
    for name in ROWS:
        match = re.search(rf"^  {re.escape(name)} +(\d+)", text, re.MULTILINE)
        if match:
            rows[name] = int(match.group(1))
    return rows


@pytest.mark.e2e
def test_demo_runs_prints_the_summary_and_leaves_nothing_running(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    out_path = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTLINE_")}
    with open(out_path, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--duration", "5", "--rate", "150",
             "--employees", "10", "--seed", "7", "--port", str(port),
             "--metrics-port", str(metrics_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    started: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    try:
        while demo.poll() is None:
            for key, cmdline in _children(demo.pid).items():
                # a zombie (or a child between fork and exec) shows an empty command line
                if cmdline or key not in started:
                    started[key] = cmdline
            if time.monotonic() > deadline:
                pytest.fail(f"demo still running after {DEMO_TIMEOUT_S:g} s: "
                            f"{out_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = out_path.read_text(errors="replace")
    assert demo.returncode == 0, f"demo exited with {demo.returncode}:\n{text[-3000:]}"

    # what it started: one broker, one worker; none of them outlives it
    workers = [k for k, cmd in started.items() if "streams.cli worker" in cmd]
    brokers = [k for k, cmd in started.items() if cmd.endswith(" broker")]
    assert len(workers) == 1 and len(brokers) == 1, f"children seen: {started}"
    deadline = time.monotonic() + 5  # the children are reaped when the demo's wait() returns
    while any(_alive(*k) for k in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {k: cmd for k, cmd in started.items() if _alive(*k)}
    assert not left, f"the demo left processes running: {left}"
    assert not port_in_use("127.0.0.1", port), f"something still listens on broker port {port}"
    assert not port_in_use("127.0.0.1", metrics_port), \
        f"something still listens on metrics port {metrics_port}"

    # the summary table, with consistent counts
    assert "Frontline demo summary (5 s)" in text, text[-3000:]
    rows = _rows(text)
    assert sorted(rows) == sorted(ROWS), f"summary rows: {rows}\n{text[-3000:]}"
    sent = re.search(r"interactions sent +\d+ +(\d+) valid, (\d+) duplicate, (\d+) malformed",
                     text)
    assert sent, text[-3000:]
    valid, duplicate, malformed = map(int, sent.groups())
    assert rows["interactions sent"] == valid + duplicate + malformed
    assert 300 <= rows["interactions sent"] <= 5 * 150 + 50, rows  # about rate x duration
    assert rows["execution scores"] == valid
    assert rows["duplicates recognised"] == duplicate
    assert rows["dead letters"] >= malformed > 0
    assert rows["gaps opened"] > 0 and rows["lessons assigned"] > 0
    # every opened gap judged by the simulator's truth at the gap's event time
    assert rows["gaps to employees truly below target"] + \
        rows["gaps to employees at/above target"] == rows["gaps opened"], rows
    assert "gaps not judged" not in text
    for name in ("gaps to employees truly below target", "gaps to employees at/above target"):
        share = re.search(rf"^  {re.escape(name)} +\d+  \((\d+\.\d) %\)", text, re.MULTILINE)
        assert share, text[-3000:]
        assert float(share.group(1)) == pytest.approx(100 * rows[name] / rows["gaps opened"],
                                                      abs=0.05)
    had_gap = re.search(r"pairs truly below target at end +\d+  employee-standard pairs; "
                        r"(\d+) of them had a gap opened", text)
    assert had_gap, text[-3000:]
    assert 0 < rows["pairs truly below target at end"]  # 10 employees, a few weak traits
    assert int(had_gap.group(1)) <= rows["pairs truly below target at end"]
    assert rows["pairs a shortfall below target at end"] <= rows["pairs truly below target at end"]
    assert rows["bonus awards"] > 0 and rows["points awarded"] >= rows["bonus awards"]
    assert "conservation: every record sent was scored, recognised as a duplicate or " \
           "dead-lettered\n" in text, text[-1500:]
    assert "stopped  worker and broker" in text
    assert "Traceback" not in text, text[-3000:]
