"""The embedded broker and the other children Frontline starts die with their parent, even one
killed with SIGKILL; asking whether a broker answers tells why not, in time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streams.child_process import die_with_parent_hook, start_child, stop_process
from streams.embedded_broker import (
    BrokerError,
    EmbeddedBroker,
    free_port,
    port_in_use,
    unreachable_reason,
)

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the death signal is a Linux feature (prctl)")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (a container's init may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


@linux_only
def test_a_child_dies_with_a_parent_killed_with_sigkill() -> None:
    script = ("import time\n"
              "from streams.child_process import start_child\n"
              "print(start_child(['sleep', '120']).pid, flush=True)\n"
              "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.kill()
        parent.wait()
        assert wait_for(lambda: not alive(child), 5), "the child outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


@linux_only
def test_a_child_started_from_another_thread_outlives_that_thread() -> None:
    """Linux sends the death signal when the starting *thread* ends: such a child is started
    without it rather than killed when a short-lived thread returns."""
    started: list[subprocess.Popen[bytes]] = []
    hooks: list[object] = []

    def start() -> None:
        hooks.append(die_with_parent_hook())
        started.append(start_child(["sleep", "60"]))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    try:
        assert hooks == [None]
        time.sleep(0.3)
        assert started[0].poll() is None, "the child died with the thread that started it"
    finally:
        stop_process(started[0], timeout_s=5)
    assert die_with_parent_hook() is not None  # the main thread gets it


@linux_only
def test_frontline_broker_killed_with_sigkill_frees_its_port() -> None:
    """`frontline broker` SIGKILLed: its Tansu child must not keep running and hold the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "broker", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    tansu: list[int] = []
    try:
        line = proc.stdout.readline()
        assert "ready on kafka://127.0.0.1:" in line, line
        tansu = children(proc.pid)
        assert len(tansu) == 1 and alive(tansu[0])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not alive(tansu[0]), 5), "Tansu outlived `frontline broker`"
        assert wait_for(lambda: not port_in_use("127.0.0.1", port), 5), f"port {port} held"
    finally:
        proc.kill()
        for pid in tansu:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_broker_on_an_unknown_host_is_refused_before_starting() -> None:
    with pytest.raises(BrokerError, match="cannot listen on nohost.invalid: unknown host"):
        EmbeddedBroker(host="nohost.invalid", port=free_port()).start()


# ---- does a broker answer? ----------------------------------------------------------------------

def test_a_closed_port_is_refused() -> None:
    started = time.monotonic()
    assert unreachable_reason([f"127.0.0.1:{free_port()}"], 0.5) == "connection refused"
    assert time.monotonic() - started < 3


def test_an_unknown_host_is_named() -> None:
    reason = unreachable_reason("nohost.invalid:9092", 0.3)
    assert reason is not None and reason.startswith("unknown host 'nohost.invalid'")


def test_a_port_that_accepts_and_never_answers_is_given_up_on_in_time() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = time.monotonic()
        reason = unreachable_reason(f"127.0.0.1:{silent.getsockname()[1]}", 1.5)
        took = time.monotonic() - started
    assert reason == "it accepts connections but does not answer as a Kafka broker"
    assert took < 6, took  # kafka-python's own defaults wait 30 s


@pytest.mark.e2e
def test_a_running_broker_answers(broker: EmbeddedBroker) -> None:
    assert unreachable_reason([f"127.0.0.1:{free_port()}", broker.bootstrap], 5) is None
