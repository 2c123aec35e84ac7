"""Ledger benchmark, on SQLite and on a PostgreSQL server it starts:

1. write throughput: decision records (awards, gaps, assignments, completions from simulated
   traffic) written in batches through LedgerStore, rows/s;
2. delay from an award on the bonus-awards topic (embedded broker) to its row in the
   database, p50/p99, with the ledger writer running, at a steady rate.

Run: python bench/ledger_bench.py [--records 20000] [--batch 500] [--rate 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaProducer
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ledger.decisions import simulated_decisions
from ledger.pg_server import PostgresServer, find_postgres_bindir

from models.events import (
    BonusAward,
)
from models.ledger import Award
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.ledger_schema import create_ledger_engine, migrate
from streams.ledger_sink import LedgerSink, SinkConfig
from streams.ledger_store import LedgerRecord, LedgerStore
from streams.settings import Settings
from streams.topic_admin import ensure_topics


def decisions(count: int, seed: int) -> list[LedgerRecord]:
    """At least `count` decision records (about one per three interactions), cut to it."""
    out: list[LedgerRecord] = []
    interactions = count * 3
    while len(out) < count:
        out = simulated_decisions(seed=seed, interactions=interactions, employees=300,
                                  teams=30)
        interactions *= 2
    return out[:count]


def write_rate(url: str, records: list[LedgerRecord], batch: int) -> float:
    engine = create_ledger_engine(url)
    migrate(engine)
    store = LedgerStore(engine)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        store.write(records[i:i + batch])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(records) / elapsed


def award_delay(url: str, broker: EmbeddedBroker, awards: list[BonusAward], rate: float,
                prefix: str) -> tuple[float, float, int]:
    settings = Settings.load({"broker": broker.url, "topic_prefix": prefix,
                              "app_id": prefix, "database_url": url}, environ={})
    ensure_topics(settings)
    engine = create_ledger_engine(url)
    migrate(engine)
    sink = LedgerSink(settings, SinkConfig(poll_ms=50))
    stop = threading.Event()
    runner = threading.Thread(target=sink.run, args=(stop.is_set,), daemon=True)
    runner.start()
    time.sleep(6)  # the writer has joined its group
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with engine.connect() as conn:
                ids = conn.execute(select(Award.award_id)).scalars().all()
            now = time.perf_counter()
            for i in ids:
                seen.setdefault(i, now)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks=1,
                             linger_ms=2, enable_idempotence=False)
    topic = settings.topic("bonus-awards")
    start = time.perf_counter()
    for i, award in enumerate(awards):
        due = start + i / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.002, due - now))
        sent[award.award_id] = time.perf_counter()
        producer.send(topic, key=award.employee_id.encode(),
                      value=award.model_dump_json().encode())
    producer.flush()
    deadline = time.monotonic() + 60
    while len(seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    watcher.join(5)
    stop.set()
    runner.join(30)
    producer.close()
    engine.dispose()
    delays = sorted((seen[k] - t) * 1000 for k, t in sent.items() if k in seen)
    return (statistics.median(delays), delays[max(0, int(len(delays) * 0.99) - 1)],
            len(sent) - len(delays))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    records = decisions(args.records, args.seed)
    wanted = int(args.rate * args.seconds)
    awards = [r for r in decisions(wanted * 4, args.seed + 1)
              if isinstance(r, BonusAward)][:wanted]
    bindir = find_postgres_bindir()
    with tempfile.TemporaryDirectory(prefix="frontline-ledger-bench-") as tmp:
        work = Path(tmp)
        servers = [("SQLite", lambda name: f"sqlite:///{work / name}.sqlite")]
        pg = PostgresServer(bindir=bindir) if bindir is not None else None
        if pg is not None:
            pg.start()
            servers.append(("PostgreSQL", pg.create_database))
        else:
            print("PostgreSQL: no server binaries found, skipped")
        try:
            print(f"write throughput: {len(records)} records in batches of {args.batch}")
            for label, make_url in servers:
                rate = write_rate(make_url("throughput"), records, args.batch)
                print(f"  {label:11s} {rate:8.0f} rows/s", flush=True)
            print(f"award on the topic -> row in the ledger, {len(awards)} awards at "
                  f"{args.rate:g}/s:")
            with EmbeddedBroker(port=free_port(), log_path=work / "broker.log") as broker:
                for label, make_url in servers:
                    p50, p99, missing = award_delay(make_url("delay"), broker, awards,
                                                    args.rate, f"lb-{label.lower()}-")
                    print(f"  {label:11s} p50 {p50:6.0f} ms  p99 {p99:6.0f} ms  "
                          f"(missing {missing})", flush=True)
        finally:
            if pg is not None:
                pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
