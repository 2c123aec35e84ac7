"""Scale-out on the embedded broker: two workers in one group split the partitions; one is
killed (SIGKILL) mid-stream; the survivor takes over its partitions and, across both workers,
every record has exactly the effect the oracle says, once: no score, gap, lesson or award lost,
none with a second id (a record re-published after the kill is the same record, byte for byte,
which consumers such as the ledger drop by its id)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest

from e2e.harness import Oracle, Pipeline, Sent, wait_until
from streams import metrics, topics
from streams.demo import start_worker, stop_process
from streams.embedded_broker import free_port
from streams.simulator import Simulator, SimulatorConfig

RATE = 150.0  # interactions per second while streaming
KILL_AFTER = 40  # the second worker dies once it has handled this many (before its first commit)
AFTER_KILL_S = 6.0  # seconds of traffic after the kill
TAKEOVER_S = 40.0  # session timeout 6 s x 1.5 + heartbeat, with ample margin


def handled(port: int) -> float:
    """Input records a worker has handled (any outcome); -1 once it is gone."""
    try:
        return metrics.total(metrics.scrape(f"http://127.0.0.1:{port}/metrics"),
                             "frontline_events_total")
    except OSError:
        return -1.0


@pytest.mark.e2e
def test_a_killed_worker_is_taken_over_and_nothing_is_lost_or_doubled(
        pipeline: Pipeline) -> None:
    p = pipeline
    first_port = p.metrics_port
    env = {k: "" for k in os.environ if k.startswith("FRONTLINE_")}
    env.update({"FRONTLINE_TOPIC_PREFIX": p.prefix, "FRONTLINE_APP_ID": p.app_id})
    second_port = free_port()
    second = start_worker(p.broker.url, second_port, p.workdir / "data-2",
                          p.workdir / "worker-second.log", env)
    try:
        n_parts = p.partitions_of(topics.INTERACTIONS)
        # the group split: each worker has some of the input partitions
        wait_until(lambda: metrics.total(metrics.scrape(f"http://127.0.0.1:{second_port}/metrics"),
                                         "frontline_partitions_assigned",
                                         topic=topics.INTERACTIONS) > 0,
                   "the second worker to get partitions", 30)

        sim = Simulator(SimulatorConfig(seed=41, employees=24, teams=3, learning=False,
                                        malformed_share=0.02, duplicate_share=0.05))
        sent: list[Sent] = []
        killed_at: float | None = None
        started = time.monotonic()
        while killed_at is None or time.monotonic() - killed_at < AFTER_KILL_S:
            batch = [sim.next_record() for _ in range(15)]
            sent += p.produce([(r.key, r.value) for r in batch if r.topic_kind == "interaction"])
            if killed_at is None and handled(second_port) >= KILL_AFTER:
                second.send_signal(signal.SIGKILL)
                second.wait(10)
                killed_at = time.monotonic()
                sent_before_kill = len(sent)
            assert time.monotonic() - started < 60, "the second worker never handled enough"
            time.sleep(max(0.0, len(sent) / RATE - (time.monotonic() - started)))
        assert killed_at is not None

        oracle = Oracle()
        before_kill: set[str] = set()  # score ids of the records sent before the kill
        for i, s in enumerate(sent):
            scores = oracle.feed(s).records.get(topics.EXECUTION_SCORES, {})
            if i < sent_before_kill:
                before_kill |= set(scores)
        expected = {t: set(oracle.outputs.get(t, {})) for t in topics.OUTPUTS
                    if t != topics.DEAD_LETTERS}
        want_dead = {f"{p.topic(s.source)}/{s.partition}/{s.offset}" for s, _ in oracle.dead}
        assert expected[topics.BONUS_AWARDS] and expected[topics.LESSON_ASSIGNMENTS], \
            "the stream must exercise awards and lessons"

        def scored() -> set[str]:
            return {o.id for o in p.reader.of(topics.EXECUTION_SCORES)}

        wait_until(lambda: before_kill <= scored(), "the survivor to take over", TAKEOVER_S,
                   lambda: f"{len(before_kill - scored())} records sent before the kill "
                           f"not scored; {p.log_tail()}")
        takeover_s = time.monotonic() - killed_at
        print(f"\ntakeover: every record sent before the kill scored {takeover_s:.1f} s after it "
              f"({len(sent)} records, {n_parts} partitions)")

        def complete() -> bool:
            return all({o.id for o in p.reader.of(t)} >= ids for t, ids in expected.items()) \
                and {o.id for o in p.reader.of(topics.DEAD_LETTERS)} >= want_dead

        wait_until(complete, "every expected output", 45, lambda: _missing(p, expected, sent))
        time.sleep(2.0)  # anything extra would arrive now

        copies: Counter[str] = Counter()
        for topic, ids in expected.items():
            outs = p.reader.of(topic)
            got = {o.id for o in outs}
            assert got == ids, f"{topic}: missing {sorted(ids - got)[:3]}, " \
                               f"unexpected {sorted(got - ids)[:3]}"
            for out in outs:  # a re-published record is the very same record
                assert out.value == oracle.outputs[topic][out.id], f"{topic} {out.id} differs"
            copies[topic] = len(outs) - len(got)
        assert {o.id for o in p.reader.of(topics.DEAD_LETTERS)} == want_dead
        print(f"records published again after the kill (same id and bytes): {dict(copies)}")

        # the survivor owns every partition now, and is ready
        wait_until(lambda: p.metric("frontline_partitions_assigned",
                                    topic=topics.INTERACTIONS) == n_parts,
                   "the survivor to hold every partition", 15)
        assert p.metric("frontline_worker_ready") == 1
        assert handled(first_port) > 0 and handled(second_port) == -1
    finally:
        stop_process(second)



def _missing(p: Pipeline, expected: dict[str, set[str]], sent: list[Sent]) -> str:
    """Which expected records are not on the topics, and where their inputs were."""
    lines = []
    for topic, ids in expected.items():
        lost = ids - {o.id for o in p.reader.of(topic)}
        lines.append(f"{topic}: {len(lost)} missing {sorted(lost)[:3]}")
    lost_scores = expected[topics.EXECUTION_SCORES] - {o.id for o in p.reader.of(
        topics.EXECUTION_SCORES)}
    for s in sent:
        try:
            event_id = json.loads(s.value).get("event_id")
        except (ValueError, AttributeError):
            continue
        if event_id in lost_scores:
            lines.append(f"  input {event_id} at partition {s.partition} offset {s.offset}")
    return "; ".join(lines) + "; " + p.log_tail()
