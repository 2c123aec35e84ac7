"""Settings: one frozen object read from FRONTLINE_* environment variables, overridable by flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "FRONTLINE_"


class SettingsError(ValueError):
    """A setting with a value Frontline cannot use; the message names the variable."""


class Settings(BaseModel):
    """Every knob of a Frontline process. Environment: FRONTLINE_<NAME IN CAPITALS>."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s)")
    playbook: Path | None = Field(None, description="playbook YAML file (default: the shipped one)")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus /metrics port, 0 = off")
    metrics_host: str = Field("0.0.0.0", description="address the metrics endpoint binds to")
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
    dedupe_horizon_hours: float = Field(168.0, gt=0, description="how far back event ids are kept")
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
            raise SettingsError(f"{source}={values.get(name)!r}: {message}") from None
