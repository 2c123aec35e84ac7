"""Fixtures of the ledger tests: an empty database on SQLite and on a real PostgreSQL server,
and a ledger migrated to the newest revision on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from streams.ledger_schema import create_ledger_engine, migrate
from streams.ledger_store import LedgerStore


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(empty_engine: Engine) -> LedgerStore:
    migrate(empty_engine)
    return LedgerStore(empty_engine)
