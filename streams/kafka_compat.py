"""Adjustments of Faust's Kafka driver that Frontline needs: a settable fetch wait (Faust fixes
it at 1.5 s, which is its floor for latency), table recovery that does not trust a broker's
"latest offset" answer (the embedded broker answers with the start of the last batch + 1, so
recovery would stop before the end of a changelog), no topic created as a side effect of a
metadata request, and aiokafka's error lines while the broker is down folded into one line per
message every few seconds."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest
from faust.transport.drivers import aiokafka as driver

from streams.settings import Settings

_original_create_worker_consumer = driver.AIOKafkaConsumerThread._create_worker_consumer
_original_highwaters = driver.AIOKafkaConsumerThread._highwaters
_fetch_wait_ms = 1500


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = _fetch_wait_ms  # read when the consumer builds its fetcher
    return consumer


async def _highwaters(self: Any, partitions: Any) -> Any:
    """End offsets as a fetch response reports them (its high watermark is right), not as
    the ListOffsets answer claims."""
    import aiokafka

    reported = dict(await _original_highwaters(self, partitions))
    need = [tp for tp, end in reported.items() if end and end > 0]
    if not need:
        return reported
    main = self._ensure_consumer()
    probe = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=main._client._bootstrap_servers,
        group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50)
    await probe.start()
    try:
        probe.assign(need)
        for tp in need:
            probe.seek(tp, reported[tp] - 1)
        pending = set(need)
        for _ in range(40):
            if not pending:
                break
            await probe.getmany(*pending, timeout_ms=250)
            for tp in list(pending):
                high = probe.highwater(tp)
                if high is not None:
                    reported[tp] = max(reported[tp], high)
                    pending.discard(tp)
    finally:
        await probe.stop()
    return reported


class _MetadataRequestWithoutTopicCreation(MetadataRequest):  # type: ignore[misc]
    """aiokafka asks for metadata with allow_auto_topic_creation=True (protocol v4+), so a
    producer sending to a topic the broker lost re-creates it with the broker's default
    partition count (Apache Kafka: 1), and a wiped broker goes unnoticed. The worker creates
    its topics itself (topic_admin.ensure_topics, Faust for the changelog)."""

    def __init__(self, topics: list[str] | None = None,
                 allow_auto_topic_creation: bool | None = False) -> None:
        super().__init__(topics, allow_auto_topic_creation)


class RepeatedLinesFilter(logging.Filter):
    """Lets the first warning or error of each kind through, then at most one every `every_s`
    seconds, which says how many it stood for. With the broker down, aiokafka's clients log
    each failed connection and fetch (about 75 lines a second); this leaves a few lines every
    `every_s` seconds."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[tuple[str, Any], tuple[float, int]] = {}  # kind -> (last shown, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.msg)
        now = time.monotonic()
        shown, held = self._seen.get(kind, (None, 0))
        if shown is not None and now - shown < self.every_s:
            self._seen[kind] = (shown, held + 1)
            return False
        self._seen[kind] = (now, 0)
        if held and shown is not None:
            record.msg = (f"{record.getMessage()} (and {held} more like it in the last "
                          f"{now - shown:.0f} s)")
            record.args = ()  # not None: mode's log formatter would format (None,)
        return True


LOG_FILTER = RepeatedLinesFilter()


def apply(settings: Settings) -> None:
    """Install the adjustments (idempotent)."""
    global _fetch_wait_ms
    _fetch_wait_ms = settings.fetch_wait_ms
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    driver.AIOKafkaConsumerThread._highwaters = _highwaters
    aiokafka.client.MetadataRequest = _MetadataRequestWithoutTopicCreation
    for name in list(logging.Logger.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logger = logging.getLogger(name)
            if LOG_FILTER not in logger.filters:
                logger.addFilter(LOG_FILTER)
