"""Settings: one frozen object read from FRONTLINE_* environment variables, overridable by flags."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "FRONTLINE_"

# FRONTLINE_* variables that are read on purpose but are not settings (none today); every other
# unknown FRONTLINE_* variable is most likely a typo and draws a warning.
NOT_SETTINGS: frozenset[str] = frozenset()

# The ledger's databases and the drivers Frontline installs for them (pyproject.toml).
_DATABASE_EXAMPLES = ("PostgreSQL (postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE) and "
                      "SQLite (sqlite:///PATH)")
_DRIVERS = {"postgresql": ("psycopg",), "sqlite": ("pysqlite",)}


class SettingsError(ValueError):
    """A setting with a value Frontline cannot use; the message names the variable."""


class Settings(BaseModel):
    """Every knob of a Frontline process. Environment: FRONTLINE_<NAME IN CAPITALS>."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s)")
    connect_timeout_s: float = Field(10.0, gt=0, le=600, description="how long a command "
                                     "waits for the broker or the ledger database to answer")
    playbook: Path | None = Field(None, description="playbook YAML file (default: the shipped one)")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus /metrics port, 0 = off")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds to "
                              "(containers set 0.0.0.0)")
    database_url: str = Field("sqlite:///frontline-data/ledger.sqlite", description="ledger URL")
    topic_prefix: str = Field("", description="prefix for every topic name")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of topics the worker creates")
    replication_factor: int = Field(1, ge=1, le=16, description="replication of created topics")
    app_id: str = Field("frontline", min_length=1, description="consumer group / Faust app id")
    group_instance_id: str | None = Field(
        None, description="static group membership id (e.g. the pod name): a restarted worker "
        "gets its partitions back without a rebalance")
    data_dir: Path = Field(Path("frontline-data"), description="worker's local data directory")
    fetch_wait_ms: int = Field(100, ge=1, le=10000, description="consumer max fetch wait")
    session_timeout_s: float = Field(6.0, ge=1, le=300, description="consumer group session")
    heartbeat_s: float = Field(2.0, gt=0, le=100, description="consumer heartbeat interval")
    broker_lost_exit_s: float = Field(60.0, gt=0, le=86400, description="a worker exits "
                                      "(status 69) once the broker has been unreachable this long")
    publish_timeout_s: float = Field(120.0, gt=0, le=86400, description="a worker exits "
                                     "(status 70) when the broker has not acknowledged a record "
                                     "this long")
    dedupe_horizon_hours: float = Field(168.0, gt=0, description="how far back event ids are kept")
    max_event_ahead_hours: float = Field(
        24.0, gt=0, le=720, description="how far an event time may lie ahead of its record's "
        "broker timestamp; beyond, the record is dead-lettered (implausible_time)")
    max_record_bytes: int = Field(
        990_000, ge=65_536, le=100_000_000, description="largest record the worker produces "
        "(outputs, forwarded copies, dead letters, state); must not exceed the producer's "
        "max_request_size and the topics' max.message.bytes")
    log_level: str = Field("info", description="worker log level")
    topic_interactions: str = Field("interactions", min_length=1, description="input topic")
    topic_lesson_completions: str = Field("lesson-completions", min_length=1,
                                          description="input topic")
    topic_execution_scores: str = Field("execution-scores", min_length=1,
                                        description="output topic")
    topic_performance_gaps: str = Field("performance-gaps", min_length=1,
                                        description="output topic")
    topic_lesson_assignments: str = Field("lesson-assignments", min_length=1,
                                          description="output topic")
    topic_bonus_awards: str = Field("bonus-awards", min_length=1, description="output topic")
    topic_lesson_effects: str = Field("lesson-effects", min_length=1,
                                      description="output topic")
    topic_dead_letters: str = Field("dead-letters", min_length=1, description="output topic")

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        for part in value.split(";"):
            hostport = part.split("://", 1)[-1]
            host, sep, port = hostport.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected kafka://HOST:PORT, got {part!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as exc:
            why = " (is the port a number?)" if isinstance(exc, ValueError) else ""
            raise ValueError(f"not a database URL{why}; the ledger supports "
                             f"{_DATABASE_EXAMPLES}") from None
        backend, _, driver = url.drivername.partition("+")
        if backend == "postgres":
            raise ValueError("postgres:// is not a SQLAlchemy URL: use postgresql+psycopg://"
                             "USER:PASSWORD@HOST:PORT/DATABASE")
        if backend not in _DRIVERS:
            close = difflib.get_close_matches(backend, _DRIVERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unsupported database {backend!r}{hint}: the ledger supports "
                             f"{_DATABASE_EXAMPLES}")
        if driver and driver not in _DRIVERS[backend]:
            raise ValueError(f"unknown {backend} driver {driver!r}: use "
                             f"{backend}+{_DRIVERS[backend][0]}:// (installed with Frontline)")
        if backend == "postgresql" and not driver:
            # SQLAlchemy 2.0 reads a bare postgresql:// as psycopg2, which is not installed
            return url.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        levels = ("debug", "info", "warning", "error", "critical")
        if value.lower() not in levels:
            raise ValueError(f"expected one of {', '.join(levels)}")
        return value.lower()

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port list for kafka-python clients."""
        return [part.split("://", 1)[-1] for part in self.broker.split(";")]

    def topic(self, name: str) -> str:
        """Full topic name for a contract name such as "bonus-awards"."""
        configured: str = getattr(self, "topic_" + name.replace("-", "_"))
        return f"{self.topic_prefix}{configured}"

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Environment first, then explicit overrides (command-line flags) that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        try:
            return cls.model_validate(values, strict=False)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            source = (f"--{name.replace('_', '-')}" if overrides and overrides.get(name) is not None
                      else ENV_PREFIX + name.upper())
            message = err["msg"].removeprefix("Value error, ")
            shown = values.get(name)
            if isinstance(shown, str):
                shown = _without_password(shown)
            raise SettingsError(f"{source}={shown!r}: {message}") from None


def _without_password(text: str) -> str:
    """A URL with its password (scheme://user:PASSWORD@host, ?password=) replaced by ***."""
    text = re.sub(r"(://[^/:@]*:)[^/]*@", r"\1***@", text)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", text)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per FRONTLINE_* variable that is not a setting (a typo is otherwise silently
    ignored), with the closest setting's name when there is one."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | NOT_SETTINGS
    warnings = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{name} is not a Frontline setting and is ignored{hint}")
    return warnings
