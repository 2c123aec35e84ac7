"""The `frontline` command line: broker, worker, simulate, demo, playbook, ledger."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from agents.gap_rule import GapRule
from models.playbook import PlaybookError, load_playbook
from streams.settings import Settings, SettingsError, unknown_variables


class UsageError(Exception):
    """A command-line mistake; printed as one line, exit code 2."""


class CommandFailed(RuntimeError):
    """Something the command needs failed while it ran (a broker or database that does not
    answer, a file that cannot be written); printed as one line, exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return int(text)


def _share(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="Kafka URL, e.g. kafka://127.0.0.1:9092 (FRONTLINE_BROKER)")
    p.add_argument("--topic-prefix", help="prefix of every topic name (FRONTLINE_TOPIC_PREFIX)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="frontline", description="Front-line performance pipeline for "
                     "contact centers. Settings come from FRONTLINE_* variables; flags win.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    p.add_argument("--port", type=_port, default=9092, help="port to listen on (default 9092)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")

    p = sub.add_parser("worker", help="run a pipeline worker (Faust)")
    _add_common(p)
    p.add_argument("--playbook", help="playbook YAML (FRONTLINE_PLAYBOOK)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off "
                   "(FRONTLINE_METRICS_PORT)")
    p.add_argument("--partitions", type=int, help="partitions of created topics "
                   "(FRONTLINE_PARTITIONS)")
    p.add_argument("--data-dir", help="worker data directory (FRONTLINE_DATA_DIR)")
    p.add_argument("--log-level", help="debug, info, warning, error (FRONTLINE_LOG_LEVEL)")

    p = sub.add_parser("simulate", help="stream realistic interaction events into the broker")
    _add_common(p)
    p.add_argument("--rate", type=_positive_float, default=200.0,
                   help="records per second, 0 = as fast as possible (default 200)")
    p.add_argument("--count", type=_count, default=None, help="stop after this many records")
    p.add_argument("--duration", type=_positive_float, default=None, help="stop after seconds")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--employees", type=_count, default=60, help="employees (default 60)")
    p.add_argument("--teams", type=_count, default=6, help="teams (default 6)")
    p.add_argument("--malformed-share", type=_share, default=0.02,
                   help="share of malformed records (default 0.02)")
    p.add_argument("--duplicate-share", type=_share, default=0.01,
                   help="share of duplicate records (default 0.01)")
    p.add_argument("--no-learning", action="store_true",
                   help="do not play the learning system (no lesson completions)")

    p = sub.add_parser("demo", help="broker + worker + simulator for a while, then a summary")
    p.add_argument("--duration", type=_positive_float, default=60.0,
                   help="seconds of simulated traffic (default 60)")
    p.add_argument("--rate", type=_positive_float, default=300.0,
                   help="records per second (default 300)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--employees", type=_count, default=60, help="employees (default 60)")
    p.add_argument("--port", type=_port, default=None,
                   help="broker port (default: 9092, or a free one if 9092 is taken)")
    p.add_argument("--metrics-port", type=_port, default=None,
                   help="worker metrics port (default: a free one)")
    p = sub.add_parser("playbook", help="check a playbook file before rolling it out")
    playbook = p.add_subparsers(dest="playbook_command", metavar="PLAYBOOK_COMMAND",
                                parser_class=_Parser)
    playbook.required = True
    q = playbook.add_parser("check", help="validate a playbook; print its version and standards")
    q.add_argument("file", nargs="?", help="playbook YAML (default: FRONTLINE_PLAYBOOK, else "
                   "the shipped one)")
    p = sub.add_parser("ledger", help="the ledger database: migrate, run the writer, balances")
    ledger = p.add_subparsers(dest="ledger_command", metavar="LEDGER_COMMAND",
                              parser_class=_Parser)
    ledger.required = True
    q = ledger.add_parser("migrate", help="create or upgrade the ledger schema")
    q.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    q = ledger.add_parser("run", help="write the decision topics into the ledger")
    _add_common(q)
    q.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    q.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off "
                   "(FRONTLINE_METRICS_PORT)")
    for table in ("awards", "assignments"):
        q = ledger.add_parser(table, help=f"list {table}, oldest first")
        _ledger_filters(q)
        q.add_argument("--status", help="assigned, overdue, completed, expired, cancelled, "
                       "superseded" if table == "assignments" else argparse.SUPPRESS)
    q = ledger.add_parser("lessons", help="per lesson: how assignments ended, time to "
                          "complete, effect with 95 %% CI")
    _ledger_filters(q)
    q.add_argument("--format", choices=("text", "json", "html"), default="text")
    q.add_argument("--output", help="write to this file instead of standard output")
    q = ledger.add_parser("export", help="export a table as CSV or JSON lines (stdout)")
    q.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    q.add_argument("--table", choices=("awards", "assignments", "gaps", "completions",
                                       "lesson_effects"), default="awards")
    _ledger_filters(q)
    q = ledger.add_parser("reconcile", help="compare ids on the output topics with the "
                          "ledger; exit 1 if any is missing on either side")
    _add_common(q)
    q.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    q.add_argument("--idle", type=_positive_float, default=2.0,
                   help="seconds without new records that end the topic read (default 2)")
    q = ledger.add_parser("balance", help="points by day, week and month; open lessons")
    q.add_argument("employee", nargs="?", help="employee id")
    q.add_argument("--team", help="a team's balance instead of an employee's")
    q.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    q = ledger.add_parser("quarantine", help="records the writer could not store: where they "
                          "were read, why, and (json) their bytes")
    q.add_argument("--format", choices=("text", "json"), default="text")
    q.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    return parser


def _since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date or time like 2026-11-02, got "
                                         f"{text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ledger_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="ledger URL (FRONTLINE_DATABASE_URL)")
    p.add_argument("--employee", help="only this employee")
    p.add_argument("--team", help="only this team")
    p.add_argument("--since", type=_since, help="only from this date/time (UTC unless given)")


def _settings(args: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides = {name: getattr(args, name, None) for name in names}
    return Settings.load(overrides)


def _require_broker(settings: Settings) -> None:
    """Fail in one line within settings.connect_timeout_s when no broker answers (a Kafka
    client would wait 30 s, then end in a traceback)."""
    from streams.embedded_broker import unreachable_reason

    reason = unreachable_reason(settings.bootstrap_servers, settings.connect_timeout_s)
    if reason is not None:
        raise CommandFailed(f"cannot reach the Kafka broker at "
                            f"{', '.join(settings.bootstrap_servers)} within "
                            f"{settings.connect_timeout_s:g} s: {reason}; check --broker or "
                            f"FRONTLINE_BROKER (`frontline broker` starts a local one)")


def _database_reason(exc: BaseException, url: Any) -> str:
    """A database driver's (often multi-line) message as one line, with a hint for SQLite."""
    text = str(getattr(exc, "orig", None) or exc)
    reason = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    if url.get_backend_name() == "sqlite" and ("unable to open" in reason
                                               or "readonly" in reason):
        reason += " (can the file and its folder be written?)"
    return reason


def _require_database(settings: Settings, schema: bool) -> None:
    """Fail in one line, naming the database (never its password), when the ledger database
    cannot be opened or reached within settings.connect_timeout_s; with `schema`, also when
    its schema is not the code's. A SQLite file's folder is created when missing."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from streams.ledger_schema import check_schema, create_ledger_engine

    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    try:
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            # libpq waits for an unanswered connection as long as TCP does (minutes)
            timeout = max(1, round(settings.connect_timeout_s))
            engine = create_engine(url, connect_args={"connect_timeout": timeout})
        else:
            engine = create_ledger_engine(settings.database_url)
    except OSError as exc:
        raise CommandFailed(f"cannot create the folder {exc.filename} of the ledger database "
                            f"{shown}: {exc.strerror or exc}") from None
    try:
        with engine.connect():
            pass
        if schema:
            check_schema(engine)
    except SQLAlchemyError as exc:
        raise CommandFailed(f"cannot open the ledger database {shown}: "
                            f"{_database_reason(exc, url)}") from None
    finally:
        engine.dispose()


@contextmanager
def _terminate_gracefully() -> Iterator[None]:
    """SIGTERM ends the command like an exception (exit 143), so that `finally` blocks stop
    the child processes it started; the previous handler comes back afterwards."""
    def terminate(*_: Any) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.embedded_broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port, host=args.host).start()
    print(f"frontline: embedded broker (Tansu, in-memory) ready on {broker.url}; Ctrl-C stops it",
          flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while broker.running() and not stop.wait(0.5):
            pass
    finally:
        broker.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = _settings(args, ("broker", "topic_prefix", "playbook", "metrics_port",
                                "partitions", "data_dir", "log_level"))
    playbook = load_playbook(settings.playbook)
    try:
        (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot use the data directory {settings.data_dir} (--data-dir, "
                            f"FRONTLINE_DATA_DIR): {exc.strerror or exc}") from None
    return run_worker(settings, playbook)


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.simulator import SimulatorConfig, run_simulation

    settings = _settings(args, ("broker", "topic_prefix"))
    try:
        config = SimulatorConfig(seed=args.seed, employees=args.employees, teams=args.teams,
                                 malformed_share=args.malformed_share,
                                 duplicate_share=args.duplicate_share,
                                 learning=not args.no_learning)
    except ValueError as exc:
        raise UsageError(f"frontline simulate: {exc}") from None
    if args.count is None and args.duration is None:
        args.count = 10_000
    _require_broker(settings)

    def progress(stats: dict[str, int]) -> None:
        now = datetime.now().strftime("%H:%M:%S")
        print(f"{now} " + "  ".join(f"{k}={v}" for k, v in stats.items()), flush=True)

    stats = run_simulation(
        settings.bootstrap_servers[0], config, count=args.count, rate=args.rate,
        duration_s=args.duration, interactions_topic=settings.topic("interactions"),
        completions_topic=settings.topic("lesson-completions"),
        assignments_topic=settings.topic("lesson-assignments"), progress=progress)
    print("simulated: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo, simulator_config

    try:
        simulator_config(args.seed, args.employees)
    except ValueError as exc:
        raise UsageError(f"frontline demo: {exc}") from None
    with _terminate_gracefully():
        return run_demo(duration_s=args.duration, rate=args.rate, seed=args.seed,
                        employees=args.employees, port=args.port,
                        metrics_port=args.metrics_port)


def cmd_playbook(args: argparse.Namespace) -> int:
    """`playbook check`: the same validation the worker does at start (a bad playbook exits 2
    with its line and field), then what the file says."""
    path = args.file if args.file is not None else _settings(args, ()).playbook
    playbook = load_playbook(path)
    print(f"playbook {playbook.version} ({path or 'shipped default'}): "
          f"{len(playbook.standards)} standards, daily points cap "
          f"{playbook.limits.daily_points_cap}")
    ev = playbook.evidence
    print(f"gap tests (Bernoulli CUSUM): false gaps at most {ev.false_gap_rate:.1%} of employees "
          f"at target and false closes at most {ev.false_close_rate:.1%} of employees at "
          f"target - shortfall, per {ev.per_interactions} applicable interactions")
    rows = [("standard", "weight", "lesson", "target", "vs", "false gaps", "open at", "close at",
             "caught", "median")]
    for name, standard in playbook.standards.items():
        d = GapRule.for_standard(playbook, name).design
        rows.append((name, f"{standard.weight:g}", standard.lesson, f"{d.target:g}",
                     f"{d.alternative:g}", f"{d.opening.false_alarm:.2%}",
                     f"{d.opening.llr(d.opening.threshold):.2f}",
                     f"{d.closing.llr(d.closing.threshold):.2f}", f"{d.power:.1%}",
                     str(d.median_delay) if d.median_delay is not None else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print(f"  (open at / close at: thresholds in log-likelihood-ratio units; caught: share of "
          f"employees at the alternative rate with a gap within {ev.per_interactions}, median "
          f"interactions to it)")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """The ledger commands, after checking in one line what they need: the database (and its
    schema, then the broker, for the commands that read topics)."""
    from alembic.util import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from streams import ledger_cli

    settings = _settings(args, ("broker", "topic_prefix", "database_url"))
    reads_topics = args.ledger_command in ("run", "reconcile")
    _require_database(settings, schema=reads_topics)
    if reads_topics:
        _require_broker(settings)
    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    try:
        return ledger_cli.run(args)
    except SQLAlchemyError as exc:  # e.g. the database went away while the command ran
        raise CommandFailed(f"cannot use the ledger database {shown}: "
                            f"{_database_reason(exc, url)}") from None
    except CommandError as exc:  # Alembic: e.g. a revision this version does not know
        raise CommandFailed(f"cannot migrate the ledger database {shown}: {exc}") from None


COMMANDS = {"broker": cmd_broker, "worker": cmd_worker, "simulate": cmd_simulate,
            "demo": cmd_demo, "playbook": cmd_playbook, "ledger": cmd_ledger}


def _quiet_stdout() -> None:
    """Send what is still buffered for a closed pipe nowhere (else Python complains at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure it knows ends as one line on stderr and a non-zero exit:
    2 for a bad argument, setting or playbook (the command could not start as told), 1 for a
    failure while it ran, 130 for Ctrl-C."""
    for warning in unknown_variables():
        print(f"frontline: warning: {warning}", file=sys.stderr)
    try:
        from kafka.errors import KafkaError

        from streams.demo import DemoError
        from streams.embedded_broker import BrokerError
        from streams.ledger_schema import LedgerSchemaError
        from streams.metrics import MetricsError
        from streams.topic_admin import TopicError
    except KeyboardInterrupt:
        print("frontline: interrupted", file=sys.stderr)
        return 130
    try:
        args = build_parser().parse_args(argv)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in a traceback at exit
        return code
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (SettingsError, PlaybookError, BrokerError, MetricsError, TopicError,
            DemoError, LedgerSchemaError) as exc:
        print(f"frontline: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"frontline: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:  # the broker failed after the command had reached it
        print(f"frontline: the Kafka broker failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like cat does
        _quiet_stdout()
        return 141
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"frontline: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("frontline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the package's module, not this __main__ copy, so that the error classes the ledger
    # commands raise (imported from streams.cli) are the ones main() catches.
    from streams import cli as _cli  # noqa: PLW0406 (deliberate: see above)

    sys.exit(_cli.main())
