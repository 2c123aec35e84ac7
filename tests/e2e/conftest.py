"""Fixtures of the end-to-end tests: one started worker per test (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import Pipeline
from streams.embedded_broker import EmbeddedBroker


@pytest.fixture
def pipeline(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    """A started worker with its own prefix, app id, data directory and metrics port."""
    p = Pipeline(broker, tmp_path)
    try:
        p.start_worker()
        yield p
    finally:
        p.close()
