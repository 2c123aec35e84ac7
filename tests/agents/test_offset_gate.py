"""The OffsetGate: each input partition's records go through the pipeline in offset order,
once each per assignment; records the consumer skipped are asked for again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from agents.decision_engine import DecisionEngine
from agents.employee_state import EmployeeState
from agents.pipeline_agent import REWIND_RETRY_S, OffsetGate, make_pipeline
from agents.record_processor import RecordProcessor
from models.playbook import Playbook
from streams import topics


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Message:
    tp: TP
    offset: int
    key: bytes
    value: bytes
    timestamp: float = 0.0

    @property
    def topic(self) -> str:
        return self.tp.topic

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass
class Event:
    message: Message


class Stream:
    """What the agent body reads: take_events() yields the batches given."""

    def __init__(self, batches: list[list[Event]]) -> None:
        self.batches = batches

    async def take_events(self, n: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self.batches:
            yield batch


class States(dict[str, EmployeeState]):
    def put(self, key: str, state: EmployeeState, partition: int = 0) -> None:
        self[key] = state


P0, P1 = TP("interactions", 0), TP("interactions", 1)


def test_the_gate_admits_in_order_and_once() -> None:
    gate = OffsetGate()
    assert gate.admit(P0, 7) == gate.ADMIT  # the first record after an assignment: any offset
    assert gate.admit(P0, 8) == gate.ADMIT
    assert gate.admit(P0, 8) == gate.SEEN  # read again after a seek back
    assert gate.admit(P0, 11) == gate.MISSING  # 9 and 10 never came
    assert gate.should_rewind(P0, now=100.0) == 9
    assert gate.admit(P0, 12) == gate.MISSING
    assert gate.should_rewind(P0, now=100.5) is None  # asked for moments ago
    assert gate.should_rewind(P0, now=100.0 + REWIND_RETRY_S + 0.1) == 9  # the seek was lost
    assert gate.admit(P1, 3) == gate.ADMIT  # partitions are independent
    # nothing more arrives (the producer stopped): the worker's timer asks again
    assert gate.overdue(now=100.0 + REWIND_RETRY_S + 0.5) == []  # asked 0.4 s ago
    assert gate.overdue(now=100.0 + 2 * REWIND_RETRY_S + 0.2) == [(P0, 9)]
    assert gate.overdue(now=100.0 + 2 * REWIND_RETRY_S + 0.3) == []
    assert [gate.admit(P0, o) for o in (9, 10, 11)] == [gate.ADMIT] * 3
    assert gate.overdue(now=1000.0) == []  # the rewind brought them: nothing to ask again
    gate.forget([P0])  # revoked: the next holder starts from the committed offset
    assert gate.admit(P0, 4) == gate.ADMIT


def test_the_pipeline_holds_a_partition_back_until_its_skipped_records_come(
        playbook: Playbook, interactions: Any) -> None:
    values = [interactions(csat=5).model_dump_json().encode() for _ in range(8)]
    key = b"emp-1"

    def ev(offset: int) -> Event:
        return Event(Message(P0, offset, key, values[offset]))

    stream = Stream([
        [ev(0), ev(1), ev(2)],
        [ev(5), ev(6)],  # 3 and 4 were skipped by the consumer
        [ev(1), ev(2)],  # a seek back to the committed offset re-reads these
        [ev(3), ev(4), ev(5), ev(6), ev(7)],  # the rewind brings them
    ])
    processed: list[int] = []
    rewinds: list[tuple[TP, int]] = []
    published: list[str] = []
    processor = RecordProcessor(DecisionEngine(playbook), States(), lambda _: 1)

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None,
                   headers: Any) -> Any:
        published.append(topic)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def save_state(employee_id: str, state: EmployeeState, partition: int) -> Any:
        return await send("state", None, b"", partition, None)

    def observe(source: Any, result: Any, seconds: float) -> None:
        assert result.outcome == "processed"

    acked: list[list[int]] = []

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(f"the batch failed: {exc!r}")

    async def rewind(tp: Any, offset: int) -> None:
        rewinds.append((tp, offset))

    gate = OffsetGate()
    real_admit = gate.admit

    def admit(tp: Any, offset: int) -> str:
        verdict = real_admit(tp, offset)
        if verdict == gate.ADMIT:
            processed.append(offset)
        return verdict

    gate.admit = admit  # type: ignore[method-assign]
    body = make_pipeline(processor, "interactions", {t: t for t in topics.ALL}, send, save_state, observe, fatal,
                         acked=lambda source, events: acked.append(
                             [e.message.offset for e in events]),
                         gate=gate, rewind=rewind)
    asyncio.run(body(stream))
    assert processed == [0, 1, 2, 3, 4, 5, 6, 7]
    assert rewinds == [(P0, 3)]  # once, though two records showed the hole
    assert published.count("execution-scores") == 8  # each interaction scored once
    assert len(acked) == 4  # every batch is acked, the held-back records included
