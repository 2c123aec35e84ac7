"""`frontline ledger ...`: migrate the schema, run the writer, show an employee's balance."""

from __future__ import annotations

import argparse
import signal
import threading

from sqlalchemy import func, select

from models.ledger import Assignment
from streams import metrics
from streams.ledger_schema import check_schema, create_ledger_engine, head_revision, migrate
from streams.ledger_store import LedgerStore
from streams.settings import Settings


def _settings(args: argparse.Namespace, *names: str) -> Settings:
    return Settings.load({name: getattr(args, name, None) for name in names})


def run(args: argparse.Namespace) -> int:
    return {"migrate": _migrate, "run": _run, "balance": _balance}[args.ledger_command](args)


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args, "database_url")
    engine = create_ledger_engine(settings.database_url)
    try:
        reached = migrate(engine)
    finally:
        engine.dispose()
    print(f"frontline: ledger schema at revision {reached} (newest {head_revision()})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from streams.ledger_sink import LedgerSink

    settings = _settings(args, "broker", "topic_prefix", "database_url", "metrics_port")
    sink = LedgerSink(settings)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"frontline: ledger writer on {settings.broker} -> "
          f"{sink.engine.url.render_as_string(hide_password=True)}", flush=True)
    sink.run(stop.is_set)
    return 0


def _balance(args: argparse.Namespace) -> int:
    settings = _settings(args, "database_url")
    engine = create_ledger_engine(settings.database_url)
    try:
        check_schema(engine)
        store = LedgerStore(engine)
        balance = store.balance(employee_id=args.employee)
        with engine.connect() as conn:
            open_lessons = conn.execute(
                select(Assignment.status, func.count()).where(
                    Assignment.employee_id == args.employee,
                    Assignment.status.in_(("assigned", "overdue")))
                .group_by(Assignment.status)).all()
    finally:
        engine.dispose()
    print(f"employee {args.employee}")
    for period in ("day", "week", "month"):
        rows = balance[period]
        print(f"  points by {period}: " + (", ".join(f"{k} {v}" for k, v in rows.items())
                                          or "none"))
    lessons = {status: n for status, n in open_lessons}
    print(f"  open lessons: {lessons.get('assigned', 0)} assigned, "
          f"{lessons.get('overdue', 0)} overdue")
    return 0
