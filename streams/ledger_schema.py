"""The ledger's schema version: apply the shipped Alembic migrations, and refuse to run on a
database that is behind (or ahead of) the code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS = Path(__file__).resolve().parent.parent / "models" / "migrations"


class LedgerSchemaError(RuntimeError):
    """The database cannot be used as it is; the message says what to run."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def create_ledger_engine(url: str) -> Engine:
    """An engine for the ledger URL; a SQLite file's folder is created if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, pool_pre_ping=True)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> str:
    """Upgrade the schema to `revision` (default: the newest); returns the revision reached."""
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    reached = current_revision(engine)
    assert reached is not None
    return reached


def check_schema(engine: Engine) -> None:
    """Raise LedgerSchemaError with a one-line message unless the schema is the code's."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise LedgerSchemaError(f"cannot reach the ledger database {url}: {reason}") from None
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise LedgerSchemaError(f"the ledger database {url} has no schema yet: run "
                                f"`frontline ledger migrate`")
    raise LedgerSchemaError(f"the ledger database {url} is at schema revision {current}, this "
                            f"version needs {head}: run `frontline ledger migrate`")
