"""The metrics endpoint's HTTP server under abuse: idle connections cost no thread and are
closed after the idle timeout, a flood of them cannot lock out a scrape, HEAD answers like GET
without a body, and anything else is refused in one line."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from streams import metrics
from streams.embedded_broker import free_port

IDLE_S = 1.0


@pytest.fixture
def server() -> Iterator[metrics.MetricsServer]:
    health = metrics.Health()
    health.set_ready(True, "ok")
    served = metrics.serve(free_port(), "127.0.0.1", health, max_connections=32,
                           idle_timeout_s=IDLE_S)
    assert served is not None
    yield served
    served.stop()


def request(server: metrics.MetricsServer, method: str, path: str,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_for(condition: object, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_300_idle_connections_cost_no_thread_and_metrics_still_answer(
        server: metrics.MetricsServer) -> None:
    threads_before = threading.active_count()
    idle = [socket.create_connection(server.address, timeout=5) for _ in range(300)]
    try:
        for sock in idle[:5]:
            sock.sendall(b"GET /metr")  # half a request line, then nothing: slow clients
        wait_for(lambda: server.open_connections == server.max_connections,
                 "the server to hold its maximum of connections")
        assert threading.active_count() <= threads_before
        started = time.monotonic()
        status, _, body = request(server, "GET", "/metrics")
        assert status == 200 and b"frontline_build_info" in body
        assert request(server, "GET", "/readyz")[:3:2] == (200, b"ok\n")
        assert time.monotonic() - started < 1.0  # not after the idle ones time out
        assert threading.active_count() <= threads_before
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_connection_is_closed_after_the_idle_timeout(
        server: metrics.MetricsServer) -> None:
    sock = socket.create_connection(server.address, timeout=5)
    try:
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server closed it without a word
        assert IDLE_S - 0.1 <= time.monotonic() - started < IDLE_S + 2
        wait_for(lambda: server.open_connections == 0, "the connection to be forgotten")
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_head_answers_like_get_without_a_body(server: metrics.MetricsServer, path: str) -> None:
    status, headers, body = request(server, "HEAD", path)
    get_status, get_headers, get_body = request(server, "GET", path)
    assert status == get_status == 200
    assert body == b"" and get_body
    assert headers["Content-Type"] == get_headers["Content-Type"]
    if path != "/metrics":  # the metrics page changes between two requests
        assert headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))


def test_gzip_is_served_when_asked_for(server: metrics.MetricsServer) -> None:
    status, headers, body = request(server, "GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert body[:2] == b"\x1f\x8b" and int(headers["Content-Length"]) == len(body)


def test_other_methods_and_garbage_are_refused(server: metrics.MetricsServer) -> None:
    status, headers, body = request(server, "POST", "/metrics")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert body == b"POST is not supported; use GET or HEAD\n"
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 Bad Request")


def test_the_default_address_is_loopback_only() -> None:
    from streams.settings import Settings

    assert Settings.load(environ={}).metrics_host == "127.0.0.1"
    served = metrics.serve(free_port())
    assert served is not None
    try:
        assert served.address[0] == "127.0.0.1"
    finally:
        served.stop()
