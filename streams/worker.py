"""Running a worker: create topics, serve metrics, start the Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import logging

import faust

from models.playbook import Playbook
from streams import metrics
from streams.app import create_app
from streams.settings import Settings
from streams.topic_admin import ensure_topics

log = logging.getLogger("frontline")


def run_worker(settings: Settings, playbook: Playbook) -> int:
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    counts = ensure_topics(settings)
    frontline = create_app(settings, playbook, counts)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    worker = faust.Worker(frontline.app, loglevel=settings.log_level.upper(),
                          override_logging=True)
    print(f"frontline: worker {settings.app_id} on {settings.broker}, playbook "
          f"{playbook.version}, metrics on :{settings.metrics_port}/metrics", flush=True)
    worker.execute_from_commandline()
    return 0
