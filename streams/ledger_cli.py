"""`frontline ledger ...`: migrate the schema, run the writer, show an employee's balance,
list, export, reconcile, the lesson report, and the quarantine."""

from __future__ import annotations

import argparse
import collections
import signal
import threading

from sqlalchemy import func, select

from models.ledger import Assignment
from streams import metrics
from streams.ledger_schema import check_schema, create_ledger_engine, head_revision, migrate
from streams.ledger_store import STATUSES, TABLES, LedgerStore
from streams.settings import Settings


def _settings(args: argparse.Namespace, *names: str) -> Settings:
    return Settings.load({name: getattr(args, name, None) for name in names})


def run(args: argparse.Namespace) -> int:
    commands = {"migrate": _migrate, "run": _run, "balance": _balance, "awards": _list,
                "assignments": _list, "export": _export, "reconcile": _reconcile,
                "lessons": _lessons, "quarantine": _quarantine}
    return commands[args.ledger_command](args)


def _store(args: argparse.Namespace) -> LedgerStore:
    engine = create_ledger_engine(_settings(args, "database_url").database_url)
    check_schema(engine)
    return LedgerStore(engine)


def _list(args: argparse.Namespace) -> int:
    from streams.cli import UsageError

    if args.ledger_command == "assignments" and args.status not in (None, *STATUSES):
        raise UsageError(f"frontline ledger assignments: unknown --status {args.status!r}; "
                         f"one of {', '.join(STATUSES)}")
    store = _store(args)
    rows = store.rows(args.ledger_command, employee_id=args.employee, team_id=args.team,
                      since=args.since, status=args.status)
    columns = {"awards": ("at", "award_id", "employee_id", "team_id", "rule", "points",
                          "period"),
               "assignments": ("assigned_at", "assignment_id", "employee_id", "standard",
                               "lesson_id", "status", "due_at", "ended_at")}[
        args.ledger_command]
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    print(f"({len(rows)} {args.ledger_command})")
    store.engine.dispose()
    return 0


def _export(args: argparse.Namespace) -> int:
    import csv
    import json
    import sys

    store = _store(args)
    rows = store.rows(args.table, employee_id=args.employee, team_id=args.team,
                      since=args.since)
    if args.format == "jsonl":
        for r in rows:
            sys.stdout.write(json.dumps(r, sort_keys=True) + "\n")
    else:
        columns = list(rows[0]) if rows else [c.name for c in
                                              TABLES[args.table].__table__.columns]
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v
                             for k, v in r.items()})
    store.engine.dispose()
    return 0


def _lessons(args: argparse.Namespace) -> int:
    from streams.cli import UsageError
    from streams.lesson_report import lesson_summaries, render_html, render_json, render_text

    store = _store(args)
    try:
        lessons = lesson_summaries(store.engine, since=args.since, team_id=args.team,
                                   employee_id=args.employee)
    finally:
        store.engine.dispose()
    if args.format == "html":
        scope = ", ".join(f"{k} {v}" for k, v in (("team", args.team), ("employee",
                          args.employee), ("since", args.since and args.since.date())) if v)
        text = render_html(lessons, generated=f"{len(lessons)} lessons"
                           + (f" ({scope})" if scope else ""))
    else:
        text = render_json(lessons) if args.format == "json" else render_text(lessons)
    if args.output is None:
        print(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise UsageError(f"frontline ledger lessons: cannot write {args.output}: "
                         f"{exc.strerror}") from None
    print(f"wrote {args.output} ({len(lessons)} lessons)")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from streams.ledger_reconcile import ledger_ids, quarantined_ids, reconcile, topic_ids

    settings = _settings(args, "broker", "topic_prefix", "database_url")
    store = _store(args)
    kept = quarantined_ids(store)
    report = reconcile(topic_ids(settings, idle_s=args.idle), ledger_ids(store), kept)
    # records, not ids: a record forwarded to another partition is there twice
    held = collections.Counter(r["contract_topic"] for r in store.quarantined())
    store.engine.dispose()
    for topic in report.on_topics:
        print(f"{topic:20s} on topics {report.on_topics[topic]:8d}  in ledger "
              f"{report.in_ledger[topic]:8d}  quarantined {len(report.quarantined[topic]):6d}"
              f"  missing in ledger {len(report.missing_in_ledger[topic]):6d}  missing on "
              f"topics {len(report.missing_on_topics[topic]):6d}")
        for side, ids in (("quarantined", report.quarantined[topic]),
                          ("missing in ledger", report.missing_in_ledger[topic]),
                          ("missing on topics", report.missing_on_topics[topic])):
            for i in ids:
                print(f"  {side}: {i}")
    # lesson completions are input, not compared with a topic: their quarantine is told here
    for topic, n in sorted(held.items()):
        if topic not in report.on_topics:
            print(f"{topic:20s} quarantined {n:6d}")
    total = held.total()
    note = (f" ({total} records quarantined: `frontline ledger quarantine` lists them)"
            if total else "")
    print(("reconciled: nothing missing on either side" if report.clean else
           "NOT reconciled: ids missing (listed above)") + note)
    return 0 if report.clean else 1


def _quarantine(args: argparse.Namespace) -> int:
    import base64
    import json

    store = _store(args)
    try:
        rows = store.quarantined(values=args.format == "json")
    finally:
        store.engine.dispose()
    if args.format == "json":
        for r in rows:
            for name in ("record_key", "value"):  # the bytes exactly, and as text to read
                raw = r.pop(name)
                r[f"{name}_base64"] = None if raw is None else base64.b64encode(raw).decode()
                r[name] = None if raw is None else raw.decode("utf-8", "backslashreplace")
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    columns = ("quarantined_at", "topic", "kafka_partition", "kafka_offset", "error_type",
               "kind", "size", "reason")
    headers = {"kafka_partition": "partition", "kafka_offset": "offset"}
    widths = {c: max([len(headers.get(c, c))] + [len(str(r[c])) for r in rows])
              for c in columns}
    print("  ".join(headers.get(c, c).ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())
    print(f"({len(rows)} quarantined records)")
    return 0


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
    from streams.cli import UsageError

    if (args.employee is None) == (args.team is None):
        raise UsageError("frontline ledger balance: give an employee id or --team TEAM")
    settings = _settings(args, "database_url")
    engine = create_ledger_engine(settings.database_url)
    try:
        check_schema(engine)
        store = LedgerStore(engine)
        balance = store.balance(employee_id=args.employee, team_id=args.team)
        who = (Assignment.employee_id == args.employee if args.employee is not None
               else Assignment.team_id == args.team)
        with engine.connect() as conn:
            open_lessons = conn.execute(
                select(Assignment.status, func.count()).where(
                    who, Assignment.status.in_(("assigned", "overdue")))
                .group_by(Assignment.status)).all()
    finally:
        engine.dispose()
    print(f"employee {args.employee}" if args.employee is not None else f"team {args.team}")
    for period in ("day", "week", "month"):
        rows = balance[period]
        print(f"  points by {period}: " + (", ".join(f"{k} {v}" for k, v in rows.items())
                                          or "none"))
    lessons = {status: n for status, n in open_lessons}
    print(f"  open lessons: {lessons.get('assigned', 0)} assigned, "
          f"{lessons.get('overdue', 0)} overdue")
    return 0
