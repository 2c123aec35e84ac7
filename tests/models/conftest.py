"""Shared fixtures for the contract (models) tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

VALID_INTERACTION: dict[str, Any] = {
    "event_id": "evt-1",
    "interaction_id": "int-1",
    "employee_id": "emp-1",
    "team_id": "team-a",
    "channel": "voice",
    "started_at": "2026-03-02T10:00:00+00:00",
    "ended_at": "2026-03-02T10:07:30+00:00",
    "wait_s": 12,
    "talk_s": 390.5,
    "hold_s": 0,
    "wrap_s": 30,
    "transfers": 0,
}

VALID_COMPLETION: dict[str, Any] = {
    "event_id": "cmp-1",
    "assignment_id": "asg-1",
    "employee_id": "emp-1",
    "completed_at": "2026-03-03T08:00:00+01:00",
}


def _factory(base: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    def make(drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
        record = dict(base)
        record.update(changes)
        for name in drop:
            del record[name]
        return record

    return make


@pytest.fixture
def interaction_dict() -> Callable[..., dict[str, Any]]:
    """make(**changes, drop=(names,)) -> a fresh valid interaction dict with the changes."""
    return _factory(VALID_INTERACTION)


@pytest.fixture
def completion_dict() -> Callable[..., dict[str, Any]]:
    """make(**changes, drop=(names,)) -> a fresh valid lesson-completion dict."""
    return _factory(VALID_COMPLETION)


@pytest.fixture
def as_json() -> Callable[[Any], bytes]:
    """Encode like a producer does: UTF-8 JSON bytes."""
    return lambda value: json.dumps(value).encode("utf-8")
