"""Prometheus metrics of a worker (no per-employee labels) and the HTTP endpoint serving them."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

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
AWARDS = Counter(
    "frontline_awards", "Bonus awards published, by rule", ["rule"], registry=REGISTRY)
POINTS = Counter(
    "frontline_points_awarded", "Bonus points awarded, by rule", ["rule"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "frontline_dead_letters", "Input records dead-lettered, by source topic and error type",
    ["topic", "error_type"], registry=REGISTRY)
PLAYBOOK_INFO = Gauge(
    "frontline_playbook_info", "Playbook in use (value 1)", ["version"], registry=REGISTRY)
READY = Gauge(
    "frontline_worker_ready", "1 once the worker has joined its group and recovered its state",
    registry=REGISTRY)


class MetricsError(RuntimeError):
    """The metrics endpoint cannot be served."""


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on a background thread; port 0 turns the endpoint off."""
    if not port:
        return
    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose "
                           f"another port with --metrics-port or FRONTLINE_METRICS_PORT") from None


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
