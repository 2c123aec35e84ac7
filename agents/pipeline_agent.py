"""The Faust agent: moves raw records from the input topics through the RecordProcessor and
its results onto the output topics, and keeps each employee's state in a Faust table.

Order matters for exactly-once effects: outputs are handed to the producer before the state
(with the event id now marked as applied) is written to the table's changelog, and the input
offset is committed only after both (Faust commits after the producer has flushed).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agents.record_processor import RecordProcessor, Result, Source

Send = Callable[[str, bytes | None, bytes, int | None, Any], Awaitable[Any]]
Observe = Callable[[Source, Result, float], None]


def make_pipeline(processor: RecordProcessor, source: Source, topic_names: Mapping[str, str],
                  send: Send, table: Any, observe: Observe) -> Callable[[Any], Awaitable[None]]:
    """Build the body of the agent of one input topic (`source` is its contract name).
    `topic_names` maps contract names to real topic names, `send` is the producer's send."""

    async def pipeline(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            started = time.perf_counter()
            result = processor.process(source, message.topic, message.partition,
                                       message.offset, message.key, message.value or b"")
            for out in result.outgoing:
                await send(topic_names[out.topic], out.key, out.value, out.partition,
                           out.headers)
            if result.state is not None and result.employee_id is not None:
                table[result.employee_id] = result.state
            observe(source, result, time.perf_counter() - started)

    return pipeline
