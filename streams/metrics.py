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
EMPLOYEES = Gauge(
    "frontline_employees_tracked", "Employees whose state this worker holds", registry=REGISTRY)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on a background thread; port 0 turns the endpoint off."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
