"""Prometheus metrics of a worker (no per-employee labels) and the HTTP endpoint serving them."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

# The _created series double the scrape size and no dashboard of ours uses them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "frontline_events", "Input records by topic and outcome "
    "(processed, duplicate, dead_lettered, forwarded)",
    ["topic", "outcome"], registry=REGISTRY)
PROCESSING_SECONDS = Histogram(
    "frontline_processing_seconds", "Time to decode, decide and hand one input record to the "
    "producer", ["topic"], registry=REGISTRY,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
RECORDS_OUT = Counter(
    "frontline_records_out", "Records published, by output topic", ["topic"], registry=REGISTRY)
GAPS = Counter(
    "frontline_gaps", "Performance gaps opened or closed, by standard",
    ["transition", "standard"], registry=REGISTRY)
LESSONS_ASSIGNED = Counter(
    "frontline_lessons_assigned", "Micro-lessons assigned, by standard", ["standard"],
    registry=REGISTRY)
LESSONS_COMPLETED = Counter(
    "frontline_lessons_completed", "Lesson completions applied", registry=REGISTRY)
LESSONS_ENDED = Counter(
    "frontline_lessons_ended", "Lesson assignments ended, by how: completed, expired, "
    "cancelled, superseded", ["status"], registry=REGISTRY)
AWARDS = Counter(
    "frontline_awards", "Bonus awards published, by rule", ["rule"], registry=REGISTRY)
POINTS = Counter(
    "frontline_points_awarded", "Bonus points awarded, by rule", ["rule"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "frontline_dead_letters", "Input records dead-lettered, by source topic and error type",
    ["topic", "error_type"], registry=REGISTRY)
PLAYBOOK_INFO = Gauge(
    "frontline_playbook_info", "Playbook in use (value 1)", ["version"], registry=REGISTRY)
END_TO_END_SECONDS = Histogram(
    "frontline_end_to_end_seconds", "From an input record's broker timestamp to the broker "
    "acknowledging everything it led to (outputs and state)", ["topic"], registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
CONSUMER_LAG = Gauge(
    "frontline_consumer_lag", "Records on this worker's partitions of an input topic that it "
    "has not processed yet (broker high watermark minus next offset)", ["topic"],
    registry=REGISTRY)
PARTITIONS_ASSIGNED = Gauge(
    "frontline_partitions_assigned", "Partitions of an input topic assigned to this worker",
    ["topic"], registry=REGISTRY)
REWINDS = Counter(
    "frontline_rewinds", "Times an input partition was read again from a record the consumer "
    "had skipped (around rebalances)", ["topic"], registry=REGISTRY)
BUILD_INFO = Gauge(
    "frontline_build_info", "Frontline build running (value 1)", ["version", "python", "faust"],
    registry=REGISTRY)
READY = Gauge(
    "frontline_worker_ready", "1 once the worker has joined its group and recovered its state",
    registry=REGISTRY)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(_version("frontline"), platform.python_version(), _version("faust-streaming")).set(1)


class MetricsError(RuntimeError):
    """The metrics endpoint cannot be served."""


class Health:
    """What /healthz and /readyz answer. Live while the process's event loop beats (a loop that
    stopped beating for `stall_s` is stuck); ready while `ready_check` says so."""

    def __init__(self, stall_s: float = 30.0) -> None:
        self.stall_s = stall_s
        self._beat: float | None = None
        self._ready = (False, "starting")
        self.ready_check: Callable[[], tuple[bool, str]] = lambda: self._ready

    def set_ready(self, ready: bool, reason: str) -> None:
        """Record readiness (and mirror it in frontline_worker_ready)."""
        self._ready = (ready, reason)
        READY.set(1 if ready else 0)

    def beat(self) -> None:
        self._beat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        if self._beat is None:
            return True, "starting"
        silent = time.monotonic() - self._beat
        if silent > self.stall_s:
            return False, f"event loop silent for {silent:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return self.ready_check()


HEALTH = Health()


def _app(health: Health) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(REGISTRY)
    checks = {"/healthz": health.live, "/livez": health.live, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        ok, reason = check()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{reason}\n".encode()]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


def serve(port: int, host: str = "0.0.0.0", health: Health = HEALTH) -> None:
    """Serve /metrics, /healthz (alive) and /readyz (ready) on a background thread; port 0
    turns the endpoint off."""
    if not port:
        return
    try:
        server = make_server(host, port, _app(health), ThreadingWSGIServer,
                             handler_class=_QuietHandler)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose "
                           f"another port with --metrics-port or FRONTLINE_METRICS_PORT") from None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


def scrape(url: str, timeout_s: float = 3.0) -> dict[str, float]:
    """Read a /metrics page into {'name{label="v",...}': value} (labels sorted)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if k.split("{", 1)[0] == name and all(w in k for w in want))
