"""How big the employee state is on the changelog, and what encoding and decoding it costs:
simulated traffic (streams/simulator.py, lessons completed by the simulated learning system)
through the real DecisionEngine, 50 interactions per employee and day by default.

    python bench/state_size_bench.py [--employees 300] [--days 10] [--per-day 50]
                                     [--horizon-hours 168] [--baseline DIR] [--json]

Sizes are of `EmployeeState.to_bytes()`: after every processed event once the dedupe memory has
filled (from the day after the horizon on; the worker writes at most that often), and of the
final states. Times are per final state, best of 5, CPU time, with the heap built before them
frozen (not the garbage collector's walks over the simulator). `--baseline DIR` measures another
Frontline source tree too (e.g. `git worktree add /tmp/frontline-prev HEAD~1`), in a child
process, and prints both side by side. `--source DIR` measures DIR instead of this tree.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def _best_us(fn: Callable[[], object], items: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best / max(1, items) * 1e6


def measure(employees: int, days: int, per_day: int, horizon_h: float) -> dict[str, Any]:
    from agents.decision_engine import DecisionEngine
    from agents.employee_state import EmployeeState
    from models.events import Interaction, LessonAssignment, LessonCompletion
    from models.playbook import load_playbook
    from streams.simulator import Simulator, SimulatorConfig

    config = SimulatorConfig(seed=11, employees=employees, teams=max(1, employees // 10),
                             contacts_per_day=per_day, malformed_share=0.0)
    sim = Simulator(config)
    engine = DecisionEngine(load_playbook(), horizon_h * 3600.0)
    states: dict[str, EmployeeState] = {}
    warm = config.start + timedelta(hours=horizon_h) + timedelta(days=1)
    end = config.start + timedelta(days=days)
    sizes: list[int] = []
    events = 0
    while True:
        record = sim.next_record()
        if record.topic_kind == "interaction":
            event: Any = Interaction.model_validate_json(record.value)
            if event.ended_at >= end:
                break
        else:
            event = LessonCompletion.model_validate_json(record.value)
        state = states.get(event.employee_id)
        if state is None:
            state = states[event.employee_id] = EmployeeState(event.employee_id)
        if isinstance(event, Interaction):
            decision = engine.on_interaction(state, event)
        else:
            decision = engine.on_completion(state, event)
        events += 1
        for out in decision.records:
            if isinstance(out, LessonAssignment):
                sim.on_assignment(out.model_dump_json().encode())
        if decision.outcome == "processed" and sim.now() >= warm:
            sizes.append(len(state.to_bytes()))
    final = list(states.values())
    encoded = [s.to_bytes() for s in final]
    # the timings below: of the states' own objects, not of collecting the simulator's heap
    gc.collect()
    gc.freeze()
    finals = [len(b) for b in encoded]
    result: dict[str, Any] = {
        "source": os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[
            "agents.employee_state"].__file__ or ""))),
        "employees": employees, "days": days, "per_day": per_day, "horizon_h": horizon_h,
        "events": events,
        "writes": {"n": len(sizes), "mean": sum(sizes) / max(1, len(sizes)),
                   "p95": _percentile(sizes, 0.95), "max": max(sizes, default=0)},
        "final": {"n": len(finals), "mean": sum(finals) / max(1, len(finals)),
                  "p95": _percentile(finals, 0.95), "max": max(finals, default=0)},
        "encode_us": _best_us(lambda: [s.to_bytes() for s in final], len(final)),
        "decode_us": _best_us(lambda: [EmployeeState.from_bytes(b) for b in encoded],
                              len(final)),
    }
    if hasattr(EmployeeState, "copy"):
        result["copy_us"] = _best_us(lambda: [s.copy() for s in final], len(final))
    return result


def _table(results: list[tuple[str, dict[str, Any]]]) -> str:
    first = results[0][1]
    title = (f"employee state on the changelog: {first['employees']} employees, "
             f"{first['per_day']} interactions a day, {first['days']} days, dedupe horizon "
             f"{first['horizon_h']:g} h ({first['events']:,} events)")
    lines = [title, ""]
    head = f"{'':34}" + "".join(f"{name:>22}" for name, _ in results)
    lines.append(head)
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("bytes per write, mean", lambda r: f"{r['writes']['mean']:,.0f}"),
        ("bytes per write, p95", lambda r: f"{r['writes']['p95']:,}"),
        ("bytes per write, max", lambda r: f"{r['writes']['max']:,}"),
        ("  (writes measured)", lambda r: f"{r['writes']['n']:,}"),
        ("bytes at the end, mean", lambda r: f"{r['final']['mean']:,.0f}"),
        ("bytes at the end, p95", lambda r: f"{r['final']['p95']:,}"),
        ("bytes at the end, max", lambda r: f"{r['final']['max']:,}"),
        ("encode (to_bytes), us per state", lambda r: f"{r['encode_us']:.1f}"),
        ("decode (from_bytes), us per state", lambda r: f"{r['decode_us']:.1f}"),
        ("copy(), us per state", lambda r: f"{r['copy_us']:.1f}" if "copy_us" in r else "-"),
    ]
    for label, cell in rows:
        lines.append(f"{label:34}" + "".join(f"{cell(r):>22}" for _, r in results))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=300)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=50)
    parser.add_argument("--horizon-hours", type=float, default=168.0)
    parser.add_argument("--source", help="measure the Frontline source tree in this folder")
    parser.add_argument("--baseline", help="also measure this source tree, for comparison")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.employees < 1 or args.per_day < 1 or args.horizon_hours <= 0:
        parser.error("--employees, --per-day and --horizon-hours must be positive")
    if args.days * 24 <= args.horizon_hours + 24:
        parser.error("--days must exceed the horizon by more than a day, or no write is "
                     "measured with a full dedupe memory")
    source = os.path.abspath(args.source or HERE)
    if not os.path.isdir(os.path.join(source, "agents")):
        parser.error(f"--source {source} is no Frontline source tree (it has no agents/)")
    sys.path.insert(0, source)
    results: list[tuple[str, dict[str, Any]]] = []
    if args.baseline:
        baseline = os.path.abspath(args.baseline)
        if not os.path.isdir(os.path.join(baseline, "agents")):
            parser.error(f"--baseline {baseline} is no Frontline source tree (it has no agents/)")
        print(f"measuring the baseline {baseline} ...", file=sys.stderr, flush=True)
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--source", baseline, "--json",
             "--employees", str(args.employees), "--days", str(args.days),
             "--per-day", str(args.per_day), "--horizon-hours", str(args.horizon_hours)],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": ""})
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            print(f"error: the baseline {baseline} could not be measured", file=sys.stderr)
            return 1
        results.append(("baseline", json.loads(child.stdout)))
    print(f"measuring {source} ...", file=sys.stderr, flush=True)
    results.append(("this tree" if args.baseline else "state",
                    measure(args.employees, args.days, args.per_day, args.horizon_hours)))
    if args.json:
        print(json.dumps(results[-1][1], indent=2))
    else:
        print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
