"""Running a worker: create topics, serve metrics, start the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import faust

from models.playbook import Playbook
from streams import metrics
from streams.app import create_app
from streams.settings import Settings
from streams.topic_admin import ensure_topics

log = logging.getLogger("frontline")

READY_LINE = "frontline: worker ready"


class FrontlineWorker(faust.Worker):  # type: ignore[misc]
    """Faust's worker that also says, once, when it is ready to process, and runs the broker
    watch (streams.app.watch_broker) from its start, recovery included."""

    started_at = time.monotonic()

    def __init__(self, *args: object,
                 broker_watch: Callable[[], Awaitable[None]] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Faust's terminal spinner sets the root logger to DEBUG (every library debug call
        # then builds a log record: ~7 % of the CPU) and writes escape codes into logs.
        self.spinner = None
        self.broker_watch = broker_watch

    async def on_start(self) -> None:
        await super().on_start()
        if self.broker_watch is not None:
            self.add_future(self.broker_watch())

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        metrics.HEALTH.set_ready(True, "ok")
        print(f"{READY_LINE} after {time.monotonic() - self.started_at:.1f} s", flush=True)


def run_worker(settings: Settings, playbook: Playbook) -> int:
    started = time.monotonic()
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    counts = ensure_topics(settings)
    frontline = create_app(settings, playbook, counts)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    worker = FrontlineWorker(frontline.app, loglevel=settings.log_level.upper(),
                             override_logging=True, broker_watch=frontline.broker_watch)
    worker.started_at = started
    where = (f"on http://{settings.metrics_host}:{settings.metrics_port}/metrics"
             if settings.metrics_port else "off")
    print(f"frontline: worker {settings.app_id} on {settings.broker}, playbook "
          f"{playbook.version}, metrics {where}", flush=True)
    worker.execute_from_commandline()
    return 0
