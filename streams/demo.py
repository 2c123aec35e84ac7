"""`frontline demo`: embedded broker + one worker + the simulator for a bounded time, with
progress while it runs and a summary table at the end. Stops everything it started."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.playbook import Playbook, load_playbook
from streams import metrics, topics
from streams.child_process import start_child, stop_process
from streams.embedded_broker import BrokerError, EmbeddedBroker, free_port, port_in_use
from streams.output_tally import OutputTally, Tally
from streams.settings import Settings
from streams.simulator import Simulator, SimulatorConfig, run_simulation
from streams.worker import READY_LINE

WORKER_READY_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 30.0


class DemoError(RuntimeError):
    """The demo could not run; the message says which part failed."""


def start_worker(broker_url: str, metrics_port: int, data_dir: Path, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `frontline worker` as a child process; wait until it says it is ready."""
    env = dict(os.environ)
    env.update({
        "FRONTLINE_BROKER": broker_url,
        "FRONTLINE_METRICS_PORT": str(metrics_port),
        "FRONTLINE_METRICS_HOST": "127.0.0.1",
        "FRONTLINE_DATA_DIR": str(data_dir),
        "FRONTLINE_LOG_LEVEL": "warning",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    with open(log_path, "wb") as log:
        proc = start_child([sys.executable, "-m", "streams.cli", "worker"], env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while READY_LINE not in log_path.read_text(errors="replace"):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise DemoError(f"worker exited with code {proc.returncode}: {' '.join(tail)}")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise DemoError(f"worker not ready after {WORKER_READY_TIMEOUT_S:g} s; see {log_path}")
        time.sleep(0.1)
    return proc


def handled(samples: dict[str, float]) -> float:
    """Interaction records the worker has finished with (not counting forwarded copies)."""
    return sum(metrics.total(samples, "frontline_events_total", topic="interactions", outcome=o)
               for o in ("processed", "duplicate", "dead_lettered"))


@dataclass(frozen=True)
class GapTruth:
    """The opened gaps judged against what the simulator knows about its employees."""

    below: int  # gaps opened while the employee's true pass rate was below the gap's target
    at_or_above: int  # ... while it was at or above it
    unjudged: int  # gaps on an employee or standard the simulator does not know
    pairs_below: int  # (employee, standard) pairs truly below target at the end
    pairs_below_gapped: int  # ... of them with a gap opened during the run
    pairs_short: int  # pairs at least the playbook's shortfall below target at the end
    pairs_short_gapped: int


def judge_gaps(gaps: Iterable[Mapping[str, Any]], sim: Simulator,
               playbook: Playbook) -> GapTruth:
    """Judge every opened gap record by the true pass rate of its standard for its employee at
    the gap's event time, and count the pairs truly below target when the run ended."""
    below = at_or_above = unjudged = 0
    gapped: set[tuple[str, str]] = set()
    for gap in gaps:
        if gap.get("status") != "opened":
            continue
        employee_id, standard = gap["employee_id"], gap["standard"]
        gapped.add((employee_id, standard))
        at = datetime.fromisoformat(gap["at"])
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # the contract's times are UTC when no offset is given
        try:
            true_rate = sim.true_rate(employee_id, standard, at)
        except KeyError:
            unjudged += 1
            continue
        if true_rate < gap["target"]:
            below += 1
        else:
            at_or_above += 1
    pairs_below = pairs_below_gapped = pairs_short = pairs_short_gapped = 0
    for profile in sim.employees():
        rates = sim.true_rates(profile.employee_id)
        for name, standard in playbook.standards.items():
            if name not in rates or rates[name] >= standard.target:
                continue
            pair_gapped = (profile.employee_id, name) in gapped
            pairs_below += 1
            pairs_below_gapped += pair_gapped
            if standard.target - rates[name] >= playbook.shortfall_of(name):
                pairs_short += 1
                pairs_short_gapped += pair_gapped
    return GapTruth(below, at_or_above, unjudged, pairs_below, pairs_below_gapped, pairs_short,
                    pairs_short_gapped)


def run_demo(duration_s: float = 60.0, rate: float = 300.0, seed: int = 7, employees: int = 60,
             port: int | None = None, metrics_port: int | None = None) -> int:
    if port is None:
        port = 9092 if not port_in_use("127.0.0.1", 9092) else free_port()
    metrics_port = metrics_port or free_port()
    playbook = load_playbook(None)
    print(f"frontline demo: {duration_s:g} s of traffic at {rate:g} records/s, {employees} "
          f"employees, seed {seed}, playbook {playbook.version}", flush=True)
    with tempfile.TemporaryDirectory(prefix="frontline-demo-") as tmp:
        work = Path(tmp)
        broker = EmbeddedBroker(port=port, log_path=work / "broker.log")
        try:
            broker.start()
        except BrokerError as exc:
            raise DemoError(str(exc)) from None
        print(f"  broker   ready on {broker.url} (embedded Tansu, in memory)", flush=True)
        worker = None
        tally = None
        try:
            started = time.monotonic()
            worker = start_worker(broker.url, metrics_port, work / "data", work / "worker.log")
            print(f"  worker   ready after {time.monotonic() - started:.1f} s, metrics on "
                  f"http://127.0.0.1:{metrics_port}/metrics", flush=True)
            settings = Settings.load({"broker": broker.url}, environ={})
            # the gap records are judged against the simulator's truth at the end
            tally = OutputTally(settings, keep_values=(topics.PERFORMANCE_GAPS,)).start()
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            simulator = Simulator(simulator_config(seed, employees))
            sim = _simulate(broker.bootstrap, duration_s, rate, simulator, tally)
            produced = sim["valid"] + sim["duplicate"] + sim["malformed"]
            samples = _drain(metrics_url, produced)
            time.sleep(1.0)  # let the tally read the last records
            t = tally.snapshot()
            truth = judge_gaps(t.values.get(topics.PERFORMANCE_GAPS, []), simulator, playbook)
            _print_summary(sim, t, truth, samples, duration_s)
            return 0 if handled(samples) >= produced else 1
        finally:
            if tally is not None:
                tally.stop()
            if worker is not None:
                stop_process(worker)
            broker.stop()
            print("  stopped  worker and broker", flush=True)


def simulator_config(seed: int, employees: int) -> SimulatorConfig:
    """The demo's traffic; raises ValueError on impossible values (checked before starting)."""
    return SimulatorConfig(seed=seed, employees=employees, teams=max(1, employees // 10))


def _simulate(bootstrap: str, duration_s: float, rate: float, simulator: Simulator,
              tally: OutputTally) -> dict[str, int]:
    started = time.monotonic()
    last = [0.0]

    def progress(stats: dict[str, int]) -> None:
        now = time.monotonic() - started
        if now - last[0] < 5.0:
            return
        last[0] = now
        t = tally.snapshot()
        sent = stats["valid"] + stats["duplicate"] + stats["malformed"]
        print(f"  {now:5.0f} s  sent {sent:6d}  scored {t.records['execution-scores']:6d}  "
              f"gaps {t.gaps['opened']:4d}  lessons {t.assignments['assigned']:4d}  "
              f"completions {stats.get('completions', 0):4d}  points {t.points:6d}  "
              f"dead letters {t.records['dead-letters']:4d}", flush=True)

    return run_simulation(bootstrap, simulator.config, count=None, rate=rate,
                          duration_s=duration_s, progress=progress, sim=simulator)


def _drain(metrics_url: str, produced: int) -> dict[str, float]:
    """Wait until the worker has handled every produced interaction record (or time out)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    samples = metrics.scrape(metrics_url)
    while handled(samples) < produced and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = metrics.scrape(metrics_url)
    return samples


def _share(part: int, whole: int) -> str:
    return f"({100 * part / whole:.1f} %)" if whole else "(-)"


def _print_summary(sim: dict[str, int], t: Tally, truth: GapTruth, samples: dict[str, float],
                   duration_s: float) -> None:
    produced = sim["valid"] + sim["duplicate"] + sim["malformed"]

    def m(outcome: str, topic: str = "interactions") -> int:
        return int(metrics.total(samples, "frontline_events_total", topic=topic, outcome=outcome))

    rows = [
        ("interactions sent", produced, (f"{sim['valid']} valid, {sim['duplicate']} duplicate, "
                                         f"{sim['malformed']} malformed")),
        ("execution scores", t.records["execution-scores"],
         f"{t.distinct('execution-scores')} distinct event ids"),
        ("duplicates recognised", m("duplicate"), "no second score, gap, lesson or award"),
        ("dead letters", t.records["dead-letters"],
         ", ".join(f"{k} {v}" for k, v in sorted(t.dead_letters.items())) or "-"),
        ("gaps opened", t.gaps["opened"], f"{t.gaps['closed']} closed"),
        ("gaps to employees truly below target", truth.below,
         f"{_share(truth.below, t.gaps['opened'])} true pass rate < target at the gap's time"),
        ("gaps to employees at/above target", truth.at_or_above,
         f"{_share(truth.at_or_above, t.gaps['opened'])} true pass rate >= target then"),
        *([("gaps not judged", truth.unjudged, "employee or standard unknown to the simulator")]
          if truth.unjudged else []),
        ("pairs truly below target at end", truth.pairs_below,
         f"employee-standard pairs; {truth.pairs_below_gapped} of them had a gap opened"),
        ("pairs a shortfall below target at end", truth.pairs_short,
         f"at least the playbook's shortfall below; {truth.pairs_short_gapped} had a gap opened"),
        ("lessons assigned", t.assignments["assigned"],
         f"{sim.get('completions', 0)} completed by the simulated learning system"),
        ("bonus awards", t.records["bonus-awards"],
         ", ".join(f"{k} {v}" for k, v in sorted(t.awards_by_rule.items())) or "-"),
        ("points awarded", t.points, ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nFrontline demo summary ({duration_s:g} s)")
    print(f"  {'what'.ljust(width)}  {'count':>8}  detail")
    print(f"  {'-' * width}  {'-' * 8}  {'-' * 40}")
    for name, count, detail in rows:
        print(f"  {name.ljust(width)}  {count:>8}  {detail}")
    lost = produced - (m("processed") + m("duplicate") + m("dead_lettered"))
    print(f"\n  conservation: every record sent was scored, recognised as a duplicate or "
          f"dead-lettered{'' if lost <= 0 else f' - except {lost} still unprocessed'}")
