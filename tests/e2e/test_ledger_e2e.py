"""The ledger writer end to end: a worker on the embedded broker, the writer reading its
topics into SQLite or a real PostgreSQL server, and a database that goes away mid-stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from e2e.harness import Pipeline, wait_until
from models.ledger import Assignment, Award, Completion, Gap
from streams import metrics, topics
from streams.cli import main
from streams.ledger_reconcile import ledger_ids, reconcile, topic_ids
from streams.ledger_schema import create_ledger_engine, migrate
from streams.ledger_sink import LAG, SOURCES, WRITE_FAILURES, LedgerSink, SinkConfig
from streams.ledger_store import LedgerStore
from streams.settings import Settings
from streams.simulator import Simulator, SimulatorConfig


def interactions(seed: int, count: int) -> list[tuple[bytes | None, bytes]]:
    sim = Simulator(SimulatorConfig(seed=seed, employees=8, teams=2, malformed_share=0.02,
                                    duplicate_share=0.02))
    out: list[tuple[bytes | None, bytes]] = []
    while len(out) < count:
        r = sim.next_record()
        if r.topic_kind == "interaction":
            out.append((r.key, r.value))
    return out


@contextmanager
def running_sink(pipeline: Pipeline, url: str) -> Iterator[LedgerSink]:
    settings = Settings.load({"broker": pipeline.broker.url, "topic_prefix": pipeline.prefix,
                              "app_id": pipeline.app_id, "database_url": url}, environ={})
    sink = LedgerSink(settings, SinkConfig(poll_ms=100, backoff_start_s=0.2,
                                           backoff_max_s=1.0, lag_every_s=0.2))
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="ledger-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join(30)
    assert not errors, f"the ledger writer failed: {errors[0]!r}"


def ledger_matches_topics(pipeline: Pipeline, engine: Engine) -> Callable[[], bool]:
    store = LedgerStore(engine)

    def check() -> bool:
        try:
            return (store.ids(Award) == {o.id for o in pipeline.reader.of(topics.BONUS_AWARDS)}
                    and store.ids(Assignment) ==
                    {o.id for o in pipeline.reader.of(topics.LESSON_ASSIGNMENTS)}
                    and store.count(Gap) == len(pipeline.reader.of(topics.PERFORMANCE_GAPS)))
        except Exception:  # noqa: BLE001 - the database may be down on purpose
            return False

    return check


def assert_reconciled(pipeline: Pipeline, engine: Engine) -> None:
    store = LedgerStore(engine)
    awards = pipeline.reader.of(topics.BONUS_AWARDS)
    on_topic = {o.id for o in awards}
    assert len(on_topic) == len(awards), "an award id twice on the topic"
    assert store.ids(Award) == on_topic
    assert store.count(Award) == len(on_topic)  # primary keys: never twice
    with engine.connect() as conn:
        points = conn.execute(select(func.coalesce(func.sum(Award.points), 0))).scalar_one()
    assert points == sum(o.json["points"] for o in awards)
    assert store.ids(Assignment) == {o.id for o in pipeline.reader.of(
        topics.LESSON_ASSIGNMENTS)}
    gaps = {(o.json["gap_id"], o.json["status"])
            for o in pipeline.reader.of(topics.PERFORMANCE_GAPS)}
    with engine.connect() as conn:
        stored = {(g, s) for g, s in conn.execute(select(Gap.gap_id, Gap.status))}
    assert stored == gaps


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.e2e
def test_the_ledger_holds_every_decision_once(pipeline: Pipeline, ledger_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    engine = create_ledger_engine(ledger_url)
    migrate(engine)
    pipeline.produce(interactions(seed=21, count=250))
    with running_sink(pipeline, ledger_url) as sink:
        wait_until(lambda: pipeline.reader.counts()[topics.EXECUTION_SCORES] >= 200,
                   "scores on the topic")
        first = interactions(seed=21, count=250)
        pipeline.produce(first)  # a replayed input: nothing new anywhere
        more = interactions(seed=22, count=150)
        pipeline.produce(more)
        pipeline.wait_handled(650)  # every input record handled: the topics are final
        wait_until(ledger_matches_topics(pipeline, engine), "the ledger to match the topics")
        assert_reconciled(pipeline, engine)
        # caught up: nothing behind on any topic the writer reads, as measured after that
        # (the gauges start at 0, so only a measurement taken now says anything)
        caught_up = time.monotonic()
        wait_until(lambda: sink._last_lag > caught_up
                   and all(LAG.labels(name)._value.get() == 0 for name in SOURCES),
                   "the ledger lag to settle at 0")
        # a lesson completion on the topic completes the assignment in the ledger
        assignment = pipeline.reader.of(topics.LESSON_ASSIGNMENTS)[0].json
        done = (f'{{"event_id": "done-1", "assignment_id": "{assignment["assignment_id"]}", '
                f'"employee_id": "{assignment["employee_id"]}", '
                f'"completed_at": "{assignment["at"]}"}}').encode()
        pipeline.produce([(assignment["employee_id"].encode(), done)],
                         source=topics.LESSON_COMPLETIONS)

        def completed() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(Assignment.status).where(
                    Assignment.assignment_id == assignment["assignment_id"])
                ).scalar_one() == "completed"
        wait_until(completed, "the completion to reach the ledger")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Completion)).scalar_one() == 1
    # the command line agrees: reconcile finds nothing missing, export has every award
    where = ["--database-url", ledger_url]
    capsys.readouterr()
    assert main(["ledger", "reconcile", "--broker", pipeline.broker.url, "--topic-prefix",
                 pipeline.prefix, "--idle", "1", *where]) == 0
    assert "reconciled: nothing missing on either side" in capsys.readouterr().out
    assert main(["ledger", "export", "--format", "jsonl", *where]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["award_id"] for r in exported) == \
        sorted(o.id for o in pipeline.reader.of(topics.BONUS_AWARDS))
    employee = exported[0]["employee_id"]
    assert main(["ledger", "balance", employee, *where]) == 0
    out = capsys.readouterr().out
    total = sum(r["points"] for r in exported if r["employee_id"] == employee)
    assert f"employee {employee}" in out and str(total) in out
    team = exported[0]["team_id"]
    assert main(["ledger", "balance", "--team", team, *where]) == 0
    team_total = sum(r["points"] for r in exported if r["team_id"] == team)
    assert str(team_total) in capsys.readouterr().out
    assert main(["ledger", "awards", "--employee", employee, *where]) == 0
    listed = capsys.readouterr().out
    assert f"({sum(r['employee_id'] == employee for r in exported)} awards)" in listed
    assert main(["ledger", "balance", *where]) == 2  # neither employee nor team
    # an award the topics do not have is reported, with a failing exit code
    with engine.begin() as conn:
        conn.execute(Award.__table__.insert().values(
            {**{k: v for k, v in exported[0].items() if k != "at"}, "award_id": "forged",
             "at": datetime.fromisoformat(exported[0]["at"])}))
    assert main(["ledger", "reconcile", "--broker", pipeline.broker.url, "--topic-prefix",
                 pipeline.prefix, "--idle", "1", *where]) == 1
    assert "missing on topics: forged" in capsys.readouterr().out
    engine.dispose()


@pytest.mark.e2e
def test_a_database_outage_mid_stream_loses_and_doubles_nothing(pipeline: Pipeline,
                                                                pg_server: object,
                                                                pg_url: str) -> None:
    engine = create_ledger_engine(pg_url)
    migrate(engine)
    failures_before = WRITE_FAILURES._value.get()
    with running_sink(pipeline, pg_url):
        pipeline.produce(interactions(seed=31, count=200))
        wait_until(lambda: LedgerStore(engine).count(Award) > 0, "awards in the ledger")
        engine.dispose()
        pg_server.stop()  # type: ignore[attr-defined]
        try:
            pipeline.produce(interactions(seed=32, count=200))
            pipeline.wait_handled(400, what="the worker to go on while the database is down")
            wait_until(lambda: WRITE_FAILURES._value.get() > failures_before,
                       "the writer to notice the outage and retry")
            # the writer's /readyz says why it is not ready
            assert metrics.HEALTH.ready() == (False, "database unreachable, retrying")
        finally:
            pg_server.start()  # type: ignore[attr-defined]
        wait_until(ledger_matches_topics(pipeline, engine), "the ledger to catch up")
        wait_until(lambda: metrics.HEALTH.ready() == (True, "ok"), "the writer to be ready")
    assert_reconciled(pipeline, engine)
    report = reconcile(topic_ids(pipeline.settings, idle_s=1.0), ledger_ids(LedgerStore(engine)))
    assert report.clean, report
    assert report.in_ledger[topics.BONUS_AWARDS] == report.on_topics[topics.BONUS_AWARDS] > 0
    engine.dispose()
