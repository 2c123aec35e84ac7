"""Prometheus metrics of a worker (no per-employee labels) and the HTTP endpoint serving them."""

from __future__ import annotations

import asyncio
import io
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
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
    "frontline_records_out", "Records handed to the producer, by output topic", ["topic"],
    registry=REGISTRY)
PUBLISHED = Counter(
    "frontline_records_published", "Records the broker acknowledged, by topic: the output "
    "topics, dead-letters, and the employee-state changelog as \"changelog\"", ["topic"],
    registry=REGISTRY)
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
BROKER_UP = Gauge(
    "frontline_broker_up", "1 while the broker answers the worker's metadata probe (every "
    "second), 0 while it does not", registry=REGISTRY)


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
    stopped beating for `stall_s` is stuck); ready while `ready_check` says so and nothing
    holds readiness back (a hold, such as an unreachable broker, wins over set_ready)."""

    def __init__(self, stall_s: float = 30.0) -> None:
        self.stall_s = stall_s
        self._beat: float | None = None
        self._ready = (False, "starting")
        # replaced whole, never changed in place: the HTTP thread reads it without a lock
        self._holds: dict[str, str] = {}
        self.ready_check: Callable[[], tuple[bool, str]] = lambda: self._ready

    def set_ready(self, ready: bool, reason: str) -> None:
        """Record readiness (and mirror it in frontline_worker_ready)."""
        self._ready = (ready, reason)
        READY.set(1 if self.ready()[0] else 0)

    def hold(self, name: str, reason: str | None) -> None:
        """Keep /readyz at 503 with `reason` until hold(name, None), whatever set_ready says."""
        holds = dict(self._holds)
        if reason is None:
            holds.pop(name, None)
        else:
            holds[name] = reason
        self._holds = holds
        READY.set(1 if self.ready()[0] else 0)

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
        holds = self._holds
        if holds:
            return False, next(iter(holds.values()))
        return self.ready_check()


HEALTH = Health()

WsgiApp = Callable[..., Iterable[bytes]]


def _app(health: Health) -> WsgiApp:
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


MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 5.0
_MAX_HEAD_BYTES = 16 * 1024


class MetricsServer:
    """The HTTP side of /metrics, /healthz, /livez and /readyz: GET and HEAD, one request per
    connection, all on one thread with its own event loop, so an idle or slow client costs a
    socket, never a thread. A connection that has not sent its request within `idle_timeout_s`
    is closed; at most `max_connections` are open, and a new one beyond that closes the oldest
    that is still waiting for its request (a flood of idle connections cannot lock out the
    scraper or the probes)."""

    def __init__(self, sock: socket.socket, app: WsgiApp, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self._sock = sock
        self._app = app
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._open = 0
        self._waiting: dict[asyncio.Task[None], None] = {}  # oldest first
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    @property
    def open_connections(self) -> int:
        return self._open

    def start(self) -> MetricsServer:
        self._thread.start()
        self._started.wait(10)
        if self._failed is not None:
            raise MetricsError(f"cannot serve metrics on {self.address[0]}:{self.address[1]}: "
                               f"{self._failed}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, sock=self._sock,
                                                limit=_MAX_HEAD_BYTES, backlog=128)
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._started.set()
        async with server:
            await self._stopping.wait()
            for task in list(self._waiting):
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._open >= self.max_connections:
            oldest = next(iter(self._waiting), None)
            if oldest is None:  # every connection is being answered: refuse this one
                writer.transport.abort()
                return
            self._waiting.pop(oldest)
            oldest.cancel()
        self._open += 1
        self._waiting[task] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                              self.idle_timeout_s)
            finally:
                self._waiting.pop(task, None)
            writer.write(self._respond(head))
            await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
            writer.close()
        except (asyncio.CancelledError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ConnectionError, OSError):
            # idle, evicted, too long a head, or gone: nothing to answer
            writer.transport.abort()
        finally:
            self._open -= 1

    def _respond(self, head: bytes) -> bytes:
        """The whole response to one request head."""
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return _response("400 Bad Request", [], b"bad request line\n", True)
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", [("Allow", "GET, HEAD")],
                             f"{method} is not supported; use GET or HEAD\n".encode(), True)
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
        }
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> None:
            answer["status"], answer["headers"] = status, headers

        body = b"".join(self._app(environ, start_response))
        return _response(answer["status"], answer["headers"], body, method == "GET")


def _response(status: str, headers: list[tuple[str, str]], body: bytes, with_body: bool) -> bytes:
    """An HTTP/1.1 response that closes the connection; HEAD gets the headers of GET."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body if with_body else b"")


def serve(port: int, host: str = "127.0.0.1", health: Health = HEALTH, *,
          max_connections: int = MAX_CONNECTIONS,
          idle_timeout_s: float = IDLE_TIMEOUT_S) -> MetricsServer | None:
    """Serve /metrics, /healthz (alive) and /readyz (ready) on a background thread; port 0
    turns the endpoint off. Bind 0.0.0.0 (all interfaces) only where something outside the
    host must scrape it, as in a container."""
    if not port:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                           f"choose another port with --metrics-port or "
                           f"FRONTLINE_METRICS_PORT") from None
    return MetricsServer(sock, _app(health), max_connections, idle_timeout_s).start()


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
