"""Losing the broker, end to end: a real worker against an embedded broker of its own (these
tests stop it, so not the session's), stopped, replaced by an empty one on the same port, or
frozen. The worker must say so on /readyz at once, keep its log readable, and then either carry
on (the broker kept its data) or exit non-zero so that the orchestrator restarts it; after the
restart, records produced are processed and published."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from e2e.harness import InteractionMaker, Pipeline, wait_until
from streams import metrics, topics
from streams.demo import start_worker
from streams.embedded_broker import EmbeddedBroker, free_port
from streams.topic_admin import BrokerWatch

READY_WITHIN_S = 5.0  # /readyz must say 503 this soon after the broker goes


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def pipeline(own_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(own_broker, tmp_path)
    try:
        yield p
    finally:
        p.close()


def start(p: Pipeline, lost_exit_s: float) -> Popen[bytes]:
    """Pipeline.start_worker with FRONTLINE_BROKER_LOST_EXIT_S set; waits until it is ready."""
    assert p.worker is None or p.worker.poll() is not None, "a worker is running"
    p.metrics_port = free_port()
    log = p.workdir / f"worker-{len(p.logs) + 1}.log"
    p.logs.append(log)
    env = {k: "" for k in os.environ if k.startswith("FRONTLINE_")}
    env.update({"FRONTLINE_TOPIC_PREFIX": p.prefix, "FRONTLINE_APP_ID": p.app_id,
                "FRONTLINE_BROKER_LOST_EXIT_S": f"{lost_exit_s:g}"})
    p.worker = start_worker(p.broker.url, p.metrics_port, p.workdir / "data", log, env)
    return p.worker


def readyz(p: Pipeline) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/readyz",
                                    timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def fresh_clients(p: Pipeline) -> None:
    """Forget the test's producer and output reader: they knew the broker that went away."""
    if p._reader is not None:
        p._reader.close()
        p._reader = None
    if p._producer is not None:
        p._producer.close(5)
        p._producer = None


def produce_and_check(p: Pipeline, employee: str, n: int) -> None:
    """Produce `n` valid interactions to a worker that has seen none yet: it processes them and
    the broker has exactly their `n` execution scores, acknowledged (as
    frontline_records_published_total says)."""
    make = InteractionMaker(employee)
    p.produce([(employee.encode(), make()) for _ in range(n)])
    p.wait_events({"processed": n})
    p.reader.wait_for({topics.EXECUTION_SCORES: n}, f"{employee}'s scores")
    wait_until(lambda: p.metric("frontline_records_published_total",
                                topic=topics.EXECUTION_SCORES) == n,
               "the worker to count its scores acknowledged", 10)


def wait_unready(p: Pipeline, since: float, within_s: float = READY_WITHIN_S) -> float:
    """Wait until /readyz says the broker is unreachable; return how long after `since`."""
    wait_until(lambda: readyz(p) == (503, "broker unreachable\n"),
               "/readyz to say 503 broker unreachable", within_s + 5, p.log_tail)
    took = time.monotonic() - since
    assert took < within_s, f"/readyz took {took:.1f} s to notice"
    samples = p.metrics()
    assert metrics.total(samples, "frontline_broker_up") == 0
    assert metrics.total(samples, "frontline_worker_ready") == 0
    return took


def exit_code(p: Pipeline, within_s: float) -> int:
    assert p.worker is not None
    wait_until(lambda: p.worker is not None and p.worker.poll() is not None,
               "the worker to exit", within_s, p.log_tail)
    return p.worker.returncode


def log_lines(p: Pipeline) -> list[str]:
    """The lines of the current (or last) worker's log."""
    return p.logs[-1].read_text(errors="replace").splitlines()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_an_empty_broker_in_place_of_the_old_one_restarts_the_worker_which_then_publishes(
        pipeline: Pipeline, own_broker: EmbeddedBroker) -> None:
    p = pipeline
    start(p, lost_exit_s=30)
    assert readyz(p) == (200, "ok\n")
    assert metrics.total(p.metrics(), "frontline_broker_up") == 1
    produce_and_check(p, "emp-before", 10)

    own_broker.stop()  # memory storage: everything it held is gone
    down = time.monotonic()
    wait_unready(p, down)
    time.sleep(2.0)  # a few seconds of outage: the log must not fill up meanwhile
    quiet = len(log_lines(p))
    own_broker.start()  # a new, empty broker on the same port, well within the 30 s
    code = exit_code(p, 15)
    assert code == BrokerWatch.DATA_LOST_EXIT, p.log_tail()
    lines = log_lines(p)
    assert quiet < 40, f"{quiet} log lines after {time.monotonic() - down:.0f} s of outage"
    assert any("no longer has this worker's topics as they were" in line
               and "a restart creates the topics" in line for line in lines), p.log_tail()

    # the orchestrator restarts it: topics are created again, offsets start on the new broker
    fresh_clients(p)
    start(p, lost_exit_s=30)
    produce_and_check(p, "emp-after", 30)
    assert readyz(p) == (200, "ok\n")
    assert p.worker is not None and p.worker.poll() is None


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_broker_gone_for_longer_than_the_grace_time_makes_the_worker_exit(
        pipeline: Pipeline, own_broker: EmbeddedBroker) -> None:
    p = pipeline
    start(p, lost_exit_s=6)
    produce_and_check(p, "emp-grace", 5)

    own_broker.stop()
    down = time.monotonic()
    wait_unready(p, down)
    code = exit_code(p, 15)
    gone_for = time.monotonic() - down
    assert code == BrokerWatch.UNREACHABLE_EXIT, p.log_tail()
    assert 6 <= gone_for < 15, f"exited {gone_for:.1f} s after the broker went"
    assert any("has been unreachable for" in line
               and "(FRONTLINE_BROKER_LOST_EXIT_S=6)" in line
               for line in log_lines(p)), p.log_tail()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_frozen_broker_that_comes_back_with_its_data_is_ridden_out(
        pipeline: Pipeline, own_broker: EmbeddedBroker) -> None:
    """The broker stops answering (SIGSTOP: connections stay open, requests time out) and
    comes back with everything it had, as a restarted Apache Kafka broker does: the worker is
    unready meanwhile, then carries on without a restart."""
    p = pipeline
    start(p, lost_exit_s=30)
    produce_and_check(p, "emp-frozen", 5)

    pid = own_broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        # a request that goes unanswered: the probe's 3 s timeout, plus its 1 s period
        wait_unready(p, frozen, READY_WITHIN_S + 3)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: readyz(p) == (200, "ok\n"), "the worker to be ready again", 30,
               p.log_tail)
    assert p.worker is not None and p.worker.poll() is None, p.log_tail()
    assert metrics.total(p.metrics(), "frontline_broker_up") == 1

    make = InteractionMaker("emp-frozen-2")
    p.produce([(b"emp-frozen-2", make()) for _ in range(7)])
    p.wait_events({"processed": 12})
    p.reader.wait_for({topics.EXECUTION_SCORES: 12}, "the scores before and after")
    assert p.worker.poll() is None, p.log_tail()
