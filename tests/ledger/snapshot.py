"""Every row of every ledger table, in a stable order and with times in UTC, for comparing two
ledgers (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from models.ledger import Base


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for name, table in sorted(Base.metadata.tables.items()):
            rows = conn.execute(select(table).order_by(*table.primary_key)).all()
            out[name] = [tuple(_plain(v) for v in row) for row in rows]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLite hands back naive UTC
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value
