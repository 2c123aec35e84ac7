"""Pipeline benchmark on the embedded broker, all in one run:

1. throughput: a Frontline worker vs a bare Faust passthrough agent (json.loads, one send per
   event) over the same pre-produced interactions, events/s from output record timestamps;
2. latency: p50/p99 from producing an interaction to a consumer seeing its score, at a steady
   rate (default 1,000 events/s);
3. start-up: seconds from launching `frontline worker` to its ready line.

Run: python bench/pipeline_bench.py [--events 10000] [--rate 1000] [--latency-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.demo import start_worker, stop_process
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.simulator import Simulator, SimulatorConfig
from streams.topic_admin import ensure_topics


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=256 * 1024, enable_idempotence=False)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def output_rate(bootstrap: str, topic: str, expected: int, timeout_s: float,
                proc: subprocess.Popen | None = None, log: Path | None = None) -> float:
    """Events/s between the first and last output record (by their producer timestamps).
    Gives up early when the process producing them has exited."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, fetch_max_wait_ms=100)
    stamps: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(stamps) < expected and time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"the worker exited with {proc.returncode}:\n{tail}")
        for batch in consumer.poll(timeout_ms=500, max_records=10000).values():
            stamps.extend(m.timestamp for m in batch)
    consumer.close()
    if len(stamps) < expected:
        raise RuntimeError(f"only {len(stamps)} of {expected} records arrived on {topic}")
    stamps.sort()
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000.0)


def interactions(count: int, seed: int, realistic: bool) -> list[tuple[bytes, bytes]]:
    config = SimulatorConfig(seed=seed, employees=200, teams=20, learning=False,
                             malformed_share=0.02 if realistic else 0.0,
                             duplicate_share=0.01 if realistic else 0.0)
    sim = Simulator(config)
    out = []
    while len(out) < count:
        r = sim.next_record()
        if r.topic_kind == "interaction":
            out.append((r.key, r.value))
    return out


def bench_frontline(broker: EmbeddedBroker, work: Path, records: list[tuple[bytes, bytes]],
                    prefix: str, expected_scores: int) -> float:
    settings = Settings.load({"broker": broker.url, "topic_prefix": prefix}, environ={})
    ensure_topics(settings)
    produce(broker.bootstrap, settings.topic("interactions"), records)
    worker = start_worker(broker.url, free_port(), work / prefix, work / f"{prefix}.log",
                          {"FRONTLINE_TOPIC_PREFIX": prefix, "FRONTLINE_APP_ID": prefix})
    try:
        return output_rate(broker.bootstrap, settings.topic("execution-scores"),
                           expected_scores, 600, worker, work / f"{prefix}.log")
    finally:
        stop_process(worker)


def bench_bare(broker: EmbeddedBroker, work: Path, records: list[tuple[bytes, bytes]]) -> float:
    settings = Settings.load({"broker": broker.url, "topic_prefix": "bare-"}, environ={})
    ensure_topics(settings, ["interactions", "execution-scores"])
    produce(broker.bootstrap, settings.topic("interactions"), records)
    proc = start_bare(broker, work, "bare-")
    try:
        return output_rate(broker.bootstrap, settings.topic("execution-scores"), len(records),
                           600, proc, work / "bare-.log")
    finally:
        stop_process(proc)


def _event_id(value: bytes) -> str:
    """The event id of a score record, without parsing the whole record (ids are plain; the
    bare agent's records have a space after the colon)."""
    start = value.index(b'"event_id":') + 11
    start = value.index(b'"', start) + 1
    return value[start:value.index(b'"', start)].decode()


def start_bare(broker: EmbeddedBroker, work: Path, prefix: str) -> subprocess.Popen:
    """The bare Faust passthrough agent on `prefix` topics, as a child process."""
    settings = Settings.load({"broker": broker.url, "topic_prefix": prefix}, environ={})
    ensure_topics(settings, ["interactions", "execution-scores"])
    env = dict(os.environ, FRONTLINE_BROKER=broker.url, BARE_IN=settings.topic("interactions"),
               BARE_OUT=settings.topic("execution-scores"), BARE_DATA_DIR=str(work / prefix),
               BARE_APP_ID=prefix, PYTHONPATH=str(ROOT))
    with open(work / f"{prefix}.log", "wb") as log:
        return subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_agent.py"), "worker",
                                 "-l", "warn"], env=env, stdout=log, stderr=subprocess.STDOUT)


def bench_latency(broker: EmbeddedBroker, work: Path, rate: float, seconds: float,
                  seed: int, bare: bool = False) -> tuple[float, float, int, list[float]]:
    """p50, p99 (ms), records never seen, and the p50 of each 5 s slice of the run (ms)."""
    prefix = "lat-bare-" if bare else "lat-"
    settings = Settings.load({"broker": broker.url, "topic_prefix": prefix}, environ={})
    ensure_topics(settings)
    if bare:
        worker = start_bare(broker, work, prefix)
    else:
        worker = start_worker(broker.url, free_port(), work / prefix, work / f"{prefix}.log",
                              {"FRONTLINE_TOPIC_PREFIX": prefix, "FRONTLINE_APP_ID": prefix})
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def consume() -> None:
        consumer = KafkaConsumer(settings.topic("execution-scores"),
                                 bootstrap_servers=broker.bootstrap, group_id=None,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=10)
        while not done.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for m in batch:
                    seen[_event_id(m.value)] = now
        consumer.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    # a little batching keeps the load generator's own CPU low on a 2-core machine; the
    # linger counts against the measured latency
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=2,
                             enable_idempotence=False)
    topic = settings.topic("interactions")
    records = interactions(int(rate * seconds) + 1, seed + 1, realistic=False)
    ids = [json.loads(value)["event_id"] for _, value in records]
    # warm-up: one record through (the bare agent has no ready line); it is not measured
    producer.send(topic, key=records[0][0], value=records[0][1])
    producer.flush()
    deadline = time.monotonic() + 90
    while ids[0] not in seen:
        if time.monotonic() > deadline or worker.poll() is not None:
            stop_process(worker)
            raise RuntimeError(f"no output from the {prefix} worker; see its log")
        time.sleep(0.05)
    records, ids = records[1:], ids[1:]
    start = time.perf_counter()
    try:
        for i, (key, value) in enumerate(records):
            due = start + i / rate
            while (now := time.perf_counter()) < due:
                time.sleep(min(0.002, due - now))
            sent[ids[i]] = time.perf_counter()
            producer.send(topic, key=key, value=value)
        producer.flush()
        deadline = time.monotonic() + 60
        while len(seen) < len(records) + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        done.set()
        reader.join(5)
        producer.close()
        stop_process(worker)
    # The first second includes the reader's and worker's warm-up; measure the steady part.
    steady = [seen[k] - t for k, t in sent.items() if k in seen and t - start > 1.0]
    slices: dict[int, list[float]] = {}
    for k, t in sent.items():
        if k in seen:
            slices.setdefault(int((t - start) // 5), []).append(seen[k] - t)
    steady.sort()
    p50 = statistics.median(steady) * 1000
    p99 = steady[int(len(steady) * 0.99) - 1] * 1000
    return p50, p99, len(records) - len(seen) + 1, [
        statistics.median(v) * 1000 for _, v in sorted(slices.items())]


def bench_startup(broker: EmbeddedBroker, work: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        prefix = f"start{i}-"
        started = time.monotonic()
        worker = start_worker(broker.url, free_port(), work / prefix, work / f"{prefix}.log",
                              {"FRONTLINE_TOPIC_PREFIX": prefix, "FRONTLINE_APP_ID": prefix})
        times.append(time.monotonic() - started)
        stop_process(worker)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="frontline-bench-") as tmp:
        work = Path(tmp)
        # Each part gets a broker of its own: the embedded broker keeps everything in memory
        # and slows down as it fills, so later parts would pay for earlier ones.
        with EmbeddedBroker(port=free_port(), log_path=work / "broker1.log") as broker:
            clean = interactions(args.events, args.seed, realistic=False)
            print(f"throughput: {len(clean)} interactions, 4 partitions, one worker each",
                  flush=True)
            bare = bench_bare(broker, work, clean)
            print(f"  bare Faust passthrough agent   {bare:8.0f} events/s", flush=True)
            ours = bench_frontline(broker, work, clean, "tp-", len(clean))
            print(f"  Frontline pipeline             {ours:8.0f} events/s   ratio "
                  f"{ours / bare:.2f}", flush=True)
        with EmbeddedBroker(port=free_port(), log_path=work / "broker2.log") as broker:
            mixed = interactions(args.events, args.seed + 2, realistic=True)
            valid = sum(1 for _, v in mixed if _is_valid(v))
            distinct = len({v for _, v in mixed if _is_valid(v)})
            mix = bench_frontline(broker, work, mixed, "mix-", distinct)
            print(f"  Frontline, 2% malformed 1% dup {mix:8.0f} scores/s   ({valid} valid of "
                  f"{len(mixed)}, fresh broker)", flush=True)
        with EmbeddedBroker(port=free_port(), log_path=work / "broker3.log") as broker:
            p50, p99, missing, slices = bench_latency(broker, work, args.rate,
                                                      args.latency_seconds, args.seed)
            print(f"latency at {args.rate:g} events/s for {args.latency_seconds:g} s: "
                  f"p50 {p50:.0f} ms  p99 {p99:.0f} ms  (unseen: {missing})", flush=True)
            print("  p50 by 5 s slice: " + ", ".join(f"{v:.0f}" for v in slices) + " ms",
                  flush=True)
        # The same run against the bare passthrough agent, on a broker of its own: how much
        # of the latency, and of its growth across the run, is the broker's and Faust's.
        with EmbeddedBroker(port=free_port(), log_path=work / "broker4.log") as broker:
            p50, p99, missing, slices = bench_latency(broker, work, args.rate,
                                                      args.latency_seconds, args.seed, bare=True)
            print(f"  bare Faust passthrough agent: p50 {p50:.0f} ms  p99 {p99:.0f} ms  "
                  f"(unseen: {missing})", flush=True)
            print("  p50 by 5 s slice: " + ", ".join(f"{v:.0f}" for v in slices) + " ms",
                  flush=True)
        with EmbeddedBroker(port=free_port(), log_path=work / "broker5.log") as broker:
            starts = bench_startup(broker, work, args.startup_runs)
            print("start-up to ready: " + ", ".join(f"{t:.1f} s" for t in starts)
                  + f"  (median {statistics.median(starts):.1f} s)", flush=True)
    return 0


def _is_valid(value: bytes) -> bool:
    from pydantic import ValidationError

    from models.events import Interaction

    try:
        Interaction.model_validate_json(value)
        return True
    except ValidationError:
        return False


if __name__ == "__main__":
    sys.exit(main())
