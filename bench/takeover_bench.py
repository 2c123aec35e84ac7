"""Takeover probe on the embedded broker: two workers in one group, a steady stream of
interactions, one worker killed with SIGKILL; reports how long until the survivor processes
again and whether every produced record was handled across both workers.

Run: python bench/takeover_bench.py [--rate 160] [--kill-after 50] [--produce-after-kill 8]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams import metrics
from streams.demo import start_worker, stop_process
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.simulator import Simulator, SimulatorConfig


def handled(port: int) -> float:
    """Input records handled by a worker (any outcome), from its /metrics; -1 if gone."""
    try:
        samples = metrics.scrape(f"http://127.0.0.1:{port}/metrics")
    except Exception:  # noqa: BLE001 - a killed worker has no endpoint
        return -1
    return metrics.total(samples, "frontline_events_total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=160.0, help="records per second")
    parser.add_argument("--kill-after", type=int, default=50,
                        help="kill the second worker once it has handled this many records")
    parser.add_argument("--produce-after-kill", type=float, default=8.0,
                        help="seconds of traffic after the kill")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait afterwards")
    args = parser.parse_args()
    sim = Simulator(SimulatorConfig(seed=3, employees=16, teams=2, malformed_share=0.0,
                                    duplicate_share=0.0))
    with tempfile.TemporaryDirectory(prefix="frontline-takeover-") as tmp, \
            EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log") as broker:
        work = Path(tmp)
        env = {"FRONTLINE_TOPIC_PREFIX": "tk-", "FRONTLINE_APP_ID": "tk"}
        ports = [free_port(), free_port()]
        workers = [start_worker(broker.url, ports[i], work / f"data-{i}", work / f"w{i}.log",
                                env) for i in range(2)]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                 enable_idempotence=False)
        stop = threading.Event()
        sent = [0]

        def produce() -> None:
            start = time.monotonic()
            while not stop.is_set():
                record = sim.next_record()
                if record.topic_kind != "interaction":
                    continue
                producer.send("tk-interactions", key=record.key, value=record.value)
                sent[0] += 1
                delay = start + sent[0] / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        while handled(ports[1]) < args.kill_after:
            time.sleep(0.05)
        before = handled(ports[1])
        workers[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        print(f"killed worker 2 after it handled {before:.0f} records", flush=True)
        last, resumed = handled(ports[0]), None
        expected_rate = args.rate * 0.75  # more than one worker's half: it has taken over
        while time.monotonic() - killed < args.produce_after_kill + args.wait:
            time.sleep(0.5)
            now = handled(ports[0])
            if resumed is None and now - last > expected_rate * 0.5 and \
                    time.monotonic() - killed > 1:
                resumed = time.monotonic() - killed
            last = now
            if time.monotonic() - killed > args.produce_after_kill and not stop.is_set():
                stop.set()
                thread.join(5)
                producer.flush()
        survivor = handled(ports[0])
        print(f"produced {sent[0]}; handled: worker 1 {survivor:.0f} + worker 2 (before the "
              f"kill, at least) {before:.0f} = {survivor + before:.0f}")
        print("takeover: " + (f"the survivor speeds up {resumed:.1f} s after the kill"
                              if resumed is not None else "not seen"))
        if survivor + before < sent[0]:
            print(f"NOT HANDLED: at least {sent[0] - survivor - before:.0f} records were never "
                  f"processed after the takeover")
        stop_process(workers[0])
        producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
