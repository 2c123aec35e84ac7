"""The Faust agent: moves raw records from an input topic through the RecordProcessor and its
results onto the output topics, and keeps each employee's state in a Faust table.

It works in small batches (whatever arrived within a few milliseconds, up to `batch_max`), a
group commit that keeps exactly-once effects cheap:

1. every record of the batch is processed in order; its outputs are handed to the producer;
2. each employee's state that changed is written once to the table's changelog (not once per
   record), after the outputs that depend on it;
3. the batch waits until the broker has acknowledged all of it (outputs and state);
4. only then are the batch's input records acked, so Faust can commit their offsets.

A crash at any point before 4 replays the batch; the replay finds either the old state (and
produces the same records with the same ids) or the new state (and recognises duplicates).

No single input record can stop this loop: the processor never raises for a record, and every
record it hands over (outputs, forwarded copies, dead letters, states) fits the producer's limit
(agents/record_processor.py). Only the broker refusing or losing a batch stops the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agents.employee_state import EmployeeState
from agents.record_processor import RecordProcessor, Result, Source

# topic, key, value, partition, headers -> a future resolved when the broker has the record
Send = Callable[[str, bytes | None, bytes | None, int | None, Any], Awaitable[Awaitable[Any]]]
Observe = Callable[[Source, Result, float], None]
SaveState = Callable[[str, EmployeeState, int], Awaitable[Awaitable[Any]]]
Fatal = Callable[[BaseException], Awaitable[None]]
Acked = Callable[[Source, list[Any]], None]  # a batch's events, once the broker has it all
Rewind = Callable[[Any, int], Awaitable[None]]  # seek an input partition back to an offset

REWIND_RETRY_S = 2.0


class OffsetGate:
    """Lets each input partition's records into the pipeline in offset order, once each while
    this worker holds the partition.

    Faust's consumer can skip records around a rebalance (its fetcher reads ahead while a
    partition is paused and the seek back races with it) and then commits past them as if
    they were a gap in a compacted topic. Our input topics have no gaps, so a jump is a
    record that never arrived: the gate holds the partition back and asks for a rewind to
    the first missing offset; records already processed during this assignment (re-read after
    a seek) are passed over."""

    ADMIT, SEEN, MISSING = "admit", "seen", "missing"

    def __init__(self) -> None:
        self.next: dict[Any, int] = {}  # partition -> next offset to process
        self._rewound: dict[Any, tuple[int, float]] = {}  # partition -> (offset, when)

    def admit(self, tp: Any, offset: int) -> str:
        expected = self.next.get(tp)
        if expected is None or offset == expected:
            self.next[tp] = offset + 1
            self._rewound.pop(tp, None)
            return self.ADMIT
        return self.SEEN if offset < expected else self.MISSING

    def should_rewind(self, tp: Any, now: float) -> int | None:
        """The offset to rewind `tp` to, unless a rewind there was asked for moments ago."""
        expected = self.next[tp]
        asked = self._rewound.get(tp)
        if asked is not None and asked[0] == expected and now - asked[1] < REWIND_RETRY_S:
            return None
        self._rewound[tp] = (expected, now)
        return expected

    def overdue(self, now: float) -> list[tuple[Any, int]]:
        """Rewinds asked for a while ago that brought nothing yet: ask again (a seek can be
        undone by the consumer's own seek back to the committed offset)."""
        due = []
        for tp, (offset, asked) in list(self._rewound.items()):
            if now - asked >= REWIND_RETRY_S:
                self._rewound[tp] = (offset, now)
                due.append((tp, offset))
        return due

    def forget(self, partitions: Any) -> None:
        """The partitions left this worker: whoever holds them next starts from the commit."""
        for tp in partitions:
            self.next.pop(tp, None)
            self._rewound.pop(tp, None)

BATCH_MAX = 1000
BATCH_WITHIN_S = 0.02


def make_pipeline(processor: RecordProcessor, source: Source, topic_names: Mapping[str, str],
                  send: Send, save_state: SaveState, observe: Observe, fatal: Fatal, *,
                  acked: Acked | None = None, gate: OffsetGate | None = None,
                  rewind: Rewind | None = None, batch_max: int = BATCH_MAX,
                  batch_within_s: float = BATCH_WITHIN_S) -> Callable[[Any], Awaitable[None]]:
    """Build the body of the agent of one input topic (`source` is its contract name).
    `topic_names` maps contract names to real topic names; `send` publishes a record and
    `save_state` writes an employee's state to the changelog partition given. When the broker
    refuses part of a batch, `fatal` is called and must not return normally: leaving the loop
    would ack the batch (Faust acks a taken batch however its body ends)."""

    async def pipeline(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):
            try:
                await _batch(events)
            except Exception as exc:
                await fatal(exc)
                raise

    async def _batch(events: list[Any]) -> None:
        pending: list[Awaitable[Any]] = []
        changed: dict[str, tuple[EmployeeState, int]] = {}
        for event in events:
            message = event.message
            if gate is not None:
                verdict = gate.admit(message.tp, message.offset)
                if verdict != OffsetGate.ADMIT:
                    if verdict == OffsetGate.MISSING and rewind is not None:
                        offset = gate.should_rewind(message.tp, time.monotonic())
                        if offset is not None:
                            await rewind(message.tp, offset)
                    continue
            started = time.perf_counter()
            # A null key or value stays null (a dead letter is the original record); the
            # broker timestamp bounds how far ahead event times may be; the headers say where
            # a forwarded copy came from. The processor never raises for a record.
            result = processor.process(source, message.topic, message.partition,
                                       message.offset, message.key, message.value,
                                       timestamp=message.timestamp,
                                       headers=getattr(message, "headers", None))
            for out in result.outgoing:
                pending.append(await send(topic_names[out.topic], out.key, out.value,
                                          out.partition, out.headers))
            if result.state is not None and result.employee_id is not None:
                # the latest object wins: a failed decision puts back a new one
                changed[result.employee_id] = (result.state, message.partition)
            observe(source, result, time.perf_counter() - started)
        for employee_id, (state, partition) in changed.items():
            pending.append(await save_state(employee_id, state, partition))
        if pending:
            # Raises if the broker refused a record: `fatal` stops the worker before the
            # batch is acked, and the batch is processed again on restart.
            await asyncio.gather(*pending)
        if acked is not None:
            acked(source, events)

    return pipeline
