"""Baseline for the throughput benchmark: a bare Faust passthrough agent (json.loads, one send
per event) with the same broker settings as a Frontline worker.

Run: python bench/bare_agent.py worker -l warning   (FRONTLINE_BROKER, BARE_IN, BARE_OUT)
"""

from __future__ import annotations

import json
import os

import faust

from streams import kafka_compat
from streams.settings import Settings

settings = Settings.load()
kafka_compat.apply(settings)
app = faust.App(
    os.environ.get("BARE_APP_ID", "bare-passthrough"),
    broker=settings.broker,
    store="memory://",
    datadir=os.environ.get("BARE_DATA_DIR", "bare-data"),
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_s,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    web_enabled=False,
)
source = app.topic(os.environ.get("BARE_IN", "bare-in"), key_serializer="raw",
                   value_serializer="raw")
sink = app.topic(os.environ.get("BARE_OUT", "bare-out"), key_serializer="raw",
                 value_serializer="raw")


@app.agent(source)
async def passthrough(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        record = json.loads(event.value)
        await sink.send(key=event.key, value=json.dumps({"event_id": record["event_id"]}).encode())


if __name__ == "__main__":
    app.main()
