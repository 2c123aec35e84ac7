"""Alembic environment for the ledger: runs on the connection handed over by
streams.ledger_schema (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from models.ledger import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
