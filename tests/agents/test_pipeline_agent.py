"""The Faust agents under Faust's test context: the real app, table and agent bodies, with the
producer replaced by a recorder (no broker)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from test_record_processor_edge import PoisonedEngine

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.pipeline_agent import make_pipeline
from agents.record_processor import (
    H_FORWARDED_FROM,
    H_FORWARDED_KEY,
    H_FORWARDED_KEY_NULL,
    MAX_RECORD_BYTES,
    RecordProcessor,
    partition_for,
    record_size,
)
from models.playbook import Playbook
from streams import topics
from streams.app import Frontline, create_app
from streams.settings import Settings


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Any


class Recorder:
    """Stands in for the producer: records every send; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.fail_on: str | None = None

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_on is not None and topic.endswith(self.fail_on):
            future.set_exception(RuntimeError("broker refused the record"))
        else:
            future.set_result(None)
        self.sent.append(Sent(topic, key, value, partition, headers))
        return future

    def on(self, suffix: str) -> list[Sent]:
        return [s for s in self.sent if s.topic.endswith(suffix)]


PARTITIONS = 4


def run_agent(playbook: Playbook, tmp_path: Path,
              scenario: Callable[[Any, Recorder, Frontline], Any]) -> Recorder:
    settings = Settings.load({"topic_prefix": "t-", "data_dir": str(tmp_path),
                              "partitions": PARTITIONS}, environ={})
    recorder = Recorder()
    fl = create_app(settings, playbook, send=recorder.send)

    async def main() -> None:
        async with fl.agents["interactions"].test_context() as agent:
            await scenario(agent, recorder, fl)

    asyncio.run(main())
    return recorder


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def encoded(ev: Any) -> bytes:
    return ev.model_dump_json().encode()


def home(employee_id: str) -> int:
    return partition_for(employee_id.encode(), PARTITIONS)


def test_scores_decisions_and_one_state_write_per_employee(playbook: Playbook, tmp_path: Path,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-7", "team-b")
    events = [make(fail=("empathy",) if i % 2 else ()) for i in range(30)]

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        for ev in events:
            await agent.put(encoded(ev), key=b"emp-7", partition=home("emp-7"), wait=False)
        await until(lambda: len(rec.on("execution-scores")) == 30)
        await until(lambda: len(rec.on("changelog")) >= 1)
        state = fl.table.data.data[b"emp-7"]
        assert len(state.seen) == 30

    rec = run_agent(playbook, tmp_path, scenario)
    scores = [json.loads(s.value) for s in rec.on("t-execution-scores")]
    assert [s["event_id"] for s in scores] == [e.event_id for e in events]
    assert all(s.key == b"emp-7" for s in rec.sent if not s.topic.endswith("changelog"))
    gaps = [json.loads(s.value) for s in rec.on("t-performance-gaps")]
    assert [(g["standard"], g["status"]) for g in gaps] == [("empathy", "opened")]
    lessons = [json.loads(s.value) for s in rec.on("t-lesson-assignments")]
    assert [a["gap_id"] for a in lessons] == [gaps[0]["gap_id"]]
    # The state is written after the records that depend on it, far fewer times than events,
    # to the changelog partition of the employee's input partition.
    changelog = rec.on("employee-state-changelog")
    assert 1 <= len(changelog) < 30
    assert {s.partition for s in changelog} == {home("emp-7")}
    last_output = max(i for i, s in enumerate(rec.sent) if not s.topic.endswith("changelog"))
    assert rec.sent[-1].topic.endswith("changelog") and len(rec.sent) - 1 > last_output
    saved = EmployeeState.from_bytes(changelog[-1].value)
    assert saved.employee_id == "emp-7"
    assert saved.standards["empathy"].gap_id == gaps[0]["gap_id"]


def test_bad_records_become_dead_letters_with_their_bytes(playbook: Playbook, tmp_path: Path,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-1")
    good = make()
    wrong = json.loads(encoded(make()))
    wrong["csat"] = 9
    bad = [b"\xff not json", b"[1, 2]", json.dumps(wrong).encode()]

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        for value in bad:
            await agent.put(value, key=b"emp-1", partition=home("emp-1"), wait=False)
        await agent.put(encoded(good), key=b"emp-1", partition=home("emp-1"), wait=False)
        await until(lambda: len(rec.on("execution-scores")) == 1
                    and len(rec.on("dead-letters")) == 3)

    rec = run_agent(playbook, tmp_path, scenario)
    letters = rec.on("t-dead-letters")
    assert [s.value for s in letters] == bad
    types = [dict(s.headers)["frontline.error.type"] for s in letters]
    assert types == [b"not_json", b"not_an_object", b"invalid_event"]
    for s in letters:
        headers = dict(s.headers)
        assert headers["frontline.source.topic"] == b"t-interactions"
        assert headers["frontline.source.partition"] == str(home("emp-1")).encode()
        assert headers["frontline.error.message"]
    assert b"csat" in dict(letters[2].headers)["frontline.error.message"]


def test_duplicates_are_recognised_and_misrouted_records_forwarded(playbook: Playbook, tmp_path: Path,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-3")
    first, second = make(), make()
    wrong = (home("emp-3") + 1) % PARTITIONS

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        for ev in (first, first, second, first):
            await agent.put(encoded(ev), key=b"emp-3", partition=home("emp-3"), wait=False)
        await agent.put(encoded(make()), key=b"x", partition=wrong, wait=False)
        await until(lambda: len(rec.on("execution-scores")) == 2
                    and len(rec.on("t-interactions")) == 1)

    rec = run_agent(playbook, tmp_path, scenario)
    assert [json.loads(s.value)["event_id"] for s in rec.on("execution-scores")] == \
        [first.event_id, second.event_id]
    (forwarded,) = rec.on("t-interactions")
    assert forwarded.partition == home("emp-3") and forwarded.key == b"emp-3"
    assert dict(forwarded.headers)[H_FORWARDED_FROM].startswith(f"t-interactions/{wrong}/".encode())


def test_a_refused_publish_stops_the_agent(playbook: Playbook, tmp_path: Path,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-4")

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        rec.fail_on = "execution-scores"
        await agent.put(encoded(make()), key=b"emp-4", partition=home("emp-4"), wait=False)
        await until(lambda: agent._crash_reason is not None)
        assert "broker refused" in str(agent._crash_reason)

    run_agent(playbook, tmp_path, scenario)


# ---- no single record stops, stalls or corrupts the agent ---------------------------------------


def test_a_tombstone_and_a_null_key_are_dead_lettered_as_they_were(playbook: Playbook,
        tmp_path: Path, interaction_factory: Any) -> None:
    good = interaction_factory("emp-5")()

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        await agent.put(None, key=None, partition=0, wait=False)
        await agent.put(b"[]", key=None, partition=0, wait=False)
        await agent.put(encoded(good), key=b"emp-5", partition=home("emp-5"), wait=False)
        await until(lambda: len(rec.on("execution-scores")) == 1
                    and len(rec.on("dead-letters")) == 2)

    rec = run_agent(playbook, tmp_path, scenario)
    tombstone, keyless = rec.on("t-dead-letters")
    assert (tombstone.key, tombstone.value) == (None, None)
    assert (keyless.key, keyless.value) == (None, b"[]")
    assert dict(tombstone.headers)["frontline.error.type"] == b"not_json"


def test_an_oversized_record_is_dead_lettered_cut_and_the_agent_goes_on(playbook: Playbook,
        tmp_path: Path, interaction_factory: Any) -> None:
    make = interaction_factory("emp-6")
    huge = b'{"event_id": "' + b"x" * 1_100_000 + b'"}'
    far_ahead = make()
    good = make()

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        await agent.put(huge, key=b"emp-6", partition=home("emp-6"), wait=False)
        # the broker received it a week before its event time: not plausible
        await agent.put(encoded(far_ahead), key=b"emp-6", partition=home("emp-6"),
                        timestamp=far_ahead.ended_at.timestamp() - 7 * 86400, wait=False)
        await agent.put(encoded(good), key=b"emp-6", partition=home("emp-6"),
                        timestamp=good.ended_at.timestamp() + 60, wait=False)
        await until(lambda: len(rec.on("execution-scores")) == 1
                    and len(rec.on("dead-letters")) == 2)
        assert agent._crash_reason is None

    rec = run_agent(playbook, tmp_path, scenario)
    cut, implausible = rec.on("t-dead-letters")
    headers = dict(cut.headers)
    assert record_size(cut.key, cut.value, cut.headers) <= MAX_RECORD_BYTES
    assert headers["frontline.dead-letter.truncated"] == b"value"
    assert headers["frontline.original.value-size"] == str(len(huge)).encode()
    assert headers["frontline.original.value-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert huge.startswith(cut.value)
    assert dict(implausible.headers)["frontline.error.type"] == b"implausible_time"
    assert implausible.value == encoded(far_ahead)


def test_a_forwarded_copy_says_what_its_key_was(playbook: Playbook, tmp_path: Path,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-8")
    wrong = (home("emp-8") + 1) % PARTITIONS

    async def scenario(agent: Any, rec: Recorder, fl: Frontline) -> None:
        await agent.put(encoded(make()), key=b"not-the-employee", partition=wrong, wait=False)
        await agent.put(encoded(make()), key=None, partition=wrong, wait=False)
        await until(lambda: len(rec.on("t-interactions")) == 2)

    rec = run_agent(playbook, tmp_path, scenario)
    keyed, keyless = (dict(s.headers) for s in rec.on("t-interactions"))
    assert keyed[H_FORWARDED_KEY] == b"not-the-employee" and H_FORWARDED_KEY_NULL not in keyed
    assert keyless[H_FORWARDED_KEY_NULL] == b"true" and H_FORWARDED_KEY not in keyless


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0
    headers: Any = None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class _Event:
    message: _Message


class _Stream:
    def __init__(self, batches: list[list[_Event]]) -> None:
        self.batches = batches

    async def take_events(self, n: int, within: float) -> Any:
        for batch in self.batches:
            yield batch


class _States(dict[str, EmployeeState]):
    def put(self, key: str, state: EmployeeState, partition: int = 0) -> None:
        self[key] = state


def test_a_decision_that_fails_mid_batch_saves_the_state_as_before_it(playbook: Playbook,
        interaction_factory: Any) -> None:
    make = interaction_factory("emp-9")
    events = [make(fail=("empathy",)) for _ in range(12)]
    engine = PoisonedEngine(playbook)
    engine.poison.add(events[5].event_id)  # the one whose decision opens the empathy gap
    store: _States = _States()
    processor = RecordProcessor(engine, store, lambda _: 1)
    reference = RecordProcessor(DecisionEngine(playbook), _States(), lambda _: 1)
    saved: list[tuple[str, bytes]] = []
    outcomes: list[str] = []

    async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   headers: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def save_state(employee_id: str, state: EmployeeState, partition: int) -> Any:
        saved.append((employee_id, state.to_bytes()))
        return await send("changelog", None, None, partition, None)

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(f"the batch failed: {exc!r}")

    batch = [_Event(_Message("interactions", 0, i, b"emp-9", encoded(ev)))
             for i, ev in enumerate(events[:8])]
    body = make_pipeline(processor, "interactions", {t: t for t in topics.ALL}, send, save_state,
                         lambda source, result, s: outcomes.append(result.outcome), fatal)
    asyncio.run(body(_Stream([batch])))
    assert outcomes == ["processed"] * 5 + ["dead_lettered"] + ["processed"] * 2
    for i, ev in enumerate(events[:8]):
        if i != 5:
            reference.process("interactions", "interactions", 0, i, b"emp-9", encoded(ev))
    assert saved == [("emp-9", reference.states.get("emp-9").to_bytes())]  # type: ignore[union-attr]
    assert store["emp-9"].to_bytes() == saved[0][1]
