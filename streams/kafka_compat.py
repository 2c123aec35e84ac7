"""Adjustments of Faust's Kafka driver that Frontline needs: a settable fetch wait (Faust fixes
it at 1.5 s, which is its floor for latency) and table recovery that does not trust a broker's
"latest offset" answer (the embedded broker answers with the start of the last batch + 1, so
recovery would stop before the end of a changelog)."""

from __future__ import annotations

from typing import Any

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


def apply(settings: Settings) -> None:
    """Install the adjustments (idempotent)."""
    global _fetch_wait_ms
    _fetch_wait_ms = settings.fetch_wait_ms
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    driver.AIOKafkaConsumerThread._highwaters = _highwaters
