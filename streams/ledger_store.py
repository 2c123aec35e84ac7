"""Writing decisions into the ledger exactly once, and reading balances back.

A batch is written in one transaction. Awards, gaps, assignments and lesson effects are
inserted or ignored by their deterministic ids, so a re-delivered or replayed record never
counts twice, on SQLite and PostgreSQL alike. How an assignment ended is the worker's
decision: its ending record sets the status once (an ending is final); one that arrives before
its assignment waits in `pending_endings`. Every lesson completion is logged with what became
of it, judged from the assignment as the worker left it, so the order of the topics does not
matter.

A record that cannot become rows on every database the ledger supports (a time that overflows
in UTC, a NUL in a text, a number too big for its column, ...) is refused up front by
`check_record`; the writer keeps such records in the `quarantine` table.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Engine, Integer, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.events import (
    ENDED_STATUSES,
    BonusAward,
    Evidence,
    LessonAssignment,
    LessonCompletion,
    LessonEffect,
    PerformanceGap,
)
from models.ledger import Assignment, Award, Completion, Effect, Gap, PendingEnding, Quarantined
from streams import topics

LedgerRecord = BonusAward | PerformanceGap | LessonAssignment | LessonEffect | LessonCompletion

APPLIED, REJECTED, PENDING = "applied", "rejected", "pending"
# statuses an ending record may still change (overdue is the ledger's own mark)
OPEN_STATUSES = ("assigned", "overdue")
STATUSES = (*OPEN_STATUSES, *ENDED_STATUSES)

# why a record is in the quarantine (the `kind` column and the metric's `reason` label)
UNPARSEABLE = "unparseable"  # not JSON, or not a record of its topic's contract
OVERFLOW = "overflow"  # a time that cannot be expressed in UTC
OUT_OF_RANGE = "out_of_range"  # a number too big for its column
INVALID_TEXT = "invalid_text"  # a NUL character or a lone surrogate in a text
TOO_LONG = "too_long"  # a text longer than its column
INVALID_NUMBER = "invalid_number"  # NaN or infinity
MISSING = "missing"  # no value where the table needs one
# ... and what the database said when it refused one record that `check_record` let through
CONSTRAINT = "constraint"  # a constraint of the table
INVALID_VALUE = "invalid_value"  # any other value the database refused
INTERNAL_ERROR = "internal_error"  # not about the database at all: a bug the record hit


class Unstorable(Exception):
    """A record that cannot become ledger rows: `kind` (one of the kinds above), a one-line
    reason, and the type of the error that storing it would raise."""

    def __init__(self, kind: str, reason: str, error_type: str = "Unstorable") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.error_type = error_type


@dataclass
class WriteResult:
    inserted: dict[str, int] = field(default_factory=dict)  # table -> new rows
    ended: int = 0  # assignments an ending record ended in this batch
    completions: Counter[str] = field(default_factory=Counter)  # outcome -> count


class LedgerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert: Any  # the dialect's insert, which has on_conflict_do_nothing
        dialect = engine.dialect.name
        if dialect == "postgresql":
            self._insert = postgresql.insert
        elif dialect == "sqlite":
            self._insert = sqlite.insert
        else:
            raise ValueError(f"the ledger supports PostgreSQL and SQLite, not {dialect}")

    # ---- writing --------------------------------------------------------------------------

    def write(self, records: Sequence[LedgerRecord]) -> WriteResult:
        """Write a batch in one transaction; safe to repeat with the same records, in any
        order. Inserts come first, then endings, then completions, so an ending in the same
        batch as its assignment always finds it."""
        with self.engine.begin() as conn:
            return self._write(conn, records)

    def probe(self, records: Sequence[LedgerRecord]) -> None:
        """Write `records` as `write` does, in a transaction that is rolled back: raises what
        writing them would raise, and changes nothing."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                self._write(conn, records)
            finally:
                transaction.rollback()

    def _write(self, conn: Any, records: Sequence[LedgerRecord]) -> WriteResult:
        result = WriteResult()
        awards = [_award_row(r) for r in records if isinstance(r, BonusAward)]
        gaps = [_gap_row(r) for r in records if isinstance(r, PerformanceGap)]
        effects = [_effect_row(r) for r in records if isinstance(r, LessonEffect)]
        lessons = [r for r in records if isinstance(r, LessonAssignment)]
        assignments = [_assignment_row(r) for r in lessons if r.status == "assigned"]
        endings = [_ending_row(r) for r in lessons if r.status != "assigned"]
        completions: dict[str, LessonCompletion] = {}
        for r in records:
            if isinstance(r, LessonCompletion):
                completions.setdefault(r.event_id, r)
        for table, rows in ((Award, awards), (Gap, gaps), (Assignment, assignments),
                            (Effect, effects)):
            if rows:
                # RETURNING counts what was new (a many-row rowcount is -1 on psycopg)
                stmt = self._insert(table).on_conflict_do_nothing().returning(
                    *table.__table__.primary_key)
                result.inserted[table.__tablename__] = len(conn.execute(stmt, rows).all())
        touched = {a["assignment_id"] for a in assignments}
        if touched:
            endings = self._take_pending_endings(conn, touched) + endings
        for e in endings:
            result.ended += self._end(conn, e)
            touched.add(e["assignment_id"])
        if touched:
            self._rejudge_pending(conn, touched, result)
        if completions:
            self._log_completions(conn, list(completions.values()), result)
        return result

    def _end(self, conn: Any, e: dict[str, Any]) -> int:
        """Apply one ending record: 1 when it ended the assignment, 0 when the assignment had
        ended already (a replay) or is not here yet (then the ending waits for it)."""
        values: dict[str, Any] = {"status": e["status"], "ended_at": e["ended_at"]}
        if e["status"] == "completed":
            values.update(completed_at=e["ended_at"],
                          completion_event_id=e["completion_event_id"])
        changed = conn.execute(update(Assignment)
                               .where(Assignment.assignment_id == e["assignment_id"],
                                      Assignment.status.in_(OPEN_STATUSES))
                               .values(**values)).rowcount
        if changed:
            return 1
        present = conn.execute(select(Assignment.status).where(
            Assignment.assignment_id == e["assignment_id"])).first()
        if present is None:
            conn.execute(self._insert(PendingEnding).on_conflict_do_nothing(), [e])
        return 0

    @staticmethod
    def _take_pending_endings(conn: Any, assignment_ids: set[str]) -> list[dict[str, Any]]:
        """Endings that waited for these (now present) assignments, oldest first."""
        ids = sorted(assignment_ids)
        kept = conn.execute(select(PendingEnding.__table__)
                            .where(PendingEnding.assignment_id.in_(ids))
                            .order_by(PendingEnding.ended_at, PendingEnding.status)).all()
        if kept:
            conn.execute(delete(PendingEnding).where(PendingEnding.assignment_id.in_(ids)))
        return [dict(row._mapping) for row in kept]

    def _log_completions(self, conn: Any, completions: list[LessonCompletion],
                         result: WriteResult) -> None:
        """Log completions not seen before, each with its outcome so far."""
        seen = set(conn.execute(select(Completion.event_id).where(
            Completion.event_id.in_([c.event_id for c in completions]))).scalars())
        fresh = [c for c in completions if c.event_id not in seen]
        if not fresh:
            return
        rows = _assignments(conn, {c.assignment_id for c in fresh})
        logged = []
        for c in fresh:
            outcome, reason = judge(rows.get(c.assignment_id), c.assignment_id, c.employee_id,
                                    c.event_id)
            result.completions[outcome] += 1
            logged.append(_completion_row(c, outcome, reason))
        conn.execute(self._insert(Completion).on_conflict_do_nothing(), logged)

    @staticmethod
    def _rejudge_pending(conn: Any, assignment_ids: set[str], result: WriteResult) -> None:
        """Pending completions of assignments that arrived or ended: judge them again."""
        pending = conn.execute(select(Completion.event_id, Completion.assignment_id,
                                      Completion.employee_id, Completion.reason)
                               .where(Completion.outcome == PENDING,
                                      Completion.assignment_id.in_(sorted(assignment_ids)))
                               ).all()
        if not pending:
            return
        rows = _assignments(conn, {c.assignment_id for c in pending})
        for c in pending:
            outcome, reason = judge(rows.get(c.assignment_id), c.assignment_id, c.employee_id,
                                    c.event_id)
            if (outcome, reason) == (PENDING, c.reason):
                continue
            conn.execute(update(Completion).where(Completion.event_id == c.event_id)
                         .values(outcome=outcome, reason=reason))
            if outcome != PENDING:
                result.completions[outcome] += 1

    def quarantine(self, rows: Sequence[dict[str, Any]]) -> set[tuple[str, int, int]]:
        """Keep records the writer could not store (rows of `quarantine`, see
        `quarantine_row`), in one transaction; returns the (topic, partition, offset) of those
        that were not there yet (a re-delivered record is kept once)."""
        if not rows:
            return set()
        stmt = self._insert(Quarantined).on_conflict_do_nothing().returning(
            Quarantined.topic, Quarantined.kafka_partition, Quarantined.kafka_offset)
        with self.engine.begin() as conn:
            return {(t, p, o) for t, p, o in conn.execute(stmt, list(rows))}

    def sweep_overdue(self, now: datetime) -> int:
        """Mark assignments past their due time as overdue; returns how many changed."""
        with self.engine.begin() as conn:
            return conn.execute(update(Assignment)
                                .where(Assignment.status == "assigned",
                                       Assignment.due_at < utc(now))
                                .values(status="overdue")).rowcount

    # ---- reading --------------------------------------------------------------------------

    def points_by_day(self, *, employee_id: str | None = None,
                      team_id: str | None = None) -> dict[str, int]:
        query = select(Award.period, func.sum(Award.points)).group_by(Award.period)
        if employee_id is not None:
            query = query.where(Award.employee_id == employee_id)
        if team_id is not None:
            query = query.where(Award.team_id == team_id)
        with self.engine.connect() as conn:
            return {period: int(total) for period, total in conn.execute(query)}

    def balance(self, *, employee_id: str | None = None,
                team_id: str | None = None) -> dict[str, dict[str, int]]:
        """Points by day, ISO week (2026-W48) and month (2026-11)."""
        days = self.points_by_day(employee_id=employee_id, team_id=team_id)
        return {"day": dict(sorted(days.items())), "week": _roll_up(days, _week),
                "month": _roll_up(days, lambda d: d[:7])}

    def rows(self, table: str, *, employee_id: str | None = None, team_id: str | None = None,
             since: datetime | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Rows of one table as dicts (times in UTC, ISO 8601), oldest first, filtered."""
        model = TABLES[table]
        time_column = {"awards": Award.at, "gaps": Gap.at, "assignments": Assignment.assigned_at,
                       "completions": Completion.completed_at,
                       "lesson_effects": Effect.at}[table]
        query = select(model.__table__).order_by(time_column, *model.__table__.primary_key)
        if employee_id is not None:
            query = query.where(model.employee_id == employee_id)
        if team_id is not None and hasattr(model, "team_id"):
            query = query.where(model.team_id == team_id)
        if since is not None:
            query = query.where(time_column >= utc(since))
        if status is not None:
            query = query.where((model.outcome if table == "completions" else model.status)
                                == status)
        with self.engine.connect() as conn:
            return [{k: _plain(v) for k, v in row._mapping.items()}
                    for row in conn.execute(query)]

    def ids(self, table: type[Award | Gap | Assignment | Effect]) -> set[str]:
        """The primary ids a table holds (gaps: their gap ids)."""
        column = {Award: Award.award_id, Gap: Gap.gap_id, Assignment: Assignment.assignment_id,
                  Effect: Effect.effect_id}[table]
        with self.engine.connect() as conn:
            return set(conn.execute(select(column)).scalars())

    def count(self, table: type[Any]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def quarantined(self, *, values: bool = False) -> list[dict[str, Any]]:
        """The quarantine, oldest first: where each record was read, why it is there, its
        size in bytes, and (`values`) its key and value as they were on the topic."""
        q = Quarantined
        columns: list[Any] = [q.quarantined_at, q.topic, q.kafka_partition, q.kafka_offset,
                              q.contract_topic, q.record_id, q.error_type, q.kind, q.reason,
                              func.coalesce(func.length(q.value), 0).label("size")]
        if values:
            columns += [q.record_key, q.value]
        query = select(*columns).order_by(q.quarantined_at, q.topic, q.kafka_partition,
                                          q.kafka_offset)
        with self.engine.connect() as conn:
            return [{k: _plain(v) for k, v in row._mapping.items()}
                    for row in conn.execute(query)]


TABLES: dict[str, Any] = {"awards": Award, "gaps": Gap, "assignments": Assignment,
                          "completions": Completion, "lesson_effects": Effect}


def judge(assignment: Any, assignment_id: str, employee_id: str,
          event_id: str) -> tuple[str, str]:
    """What became of a completion, from its assignment's row as the worker's records left it
    (None: not in the ledger): (outcome, reason). Depends on that row only, so the order in
    which completions, assignments and endings arrive does not change the end result."""
    if assignment is None:
        return PENDING, f"assignment {assignment_id} is not in the ledger yet"
    if assignment.employee_id != employee_id:
        return REJECTED, (f"assignment {assignment_id} belongs to employee "
                          f"{assignment.employee_id}, not {employee_id}")
    if assignment.completion_event_id == event_id:
        return APPLIED, ""
    if assignment.status == "completed":
        return REJECTED, (f"assignment {assignment_id} was already completed by "
                          f"{assignment.completion_event_id}")
    if assignment.status in ENDED_STATUSES:
        ended = utc(assignment.ended_at).isoformat() if assignment.ended_at else "?"
        return REJECTED, f"assignment {assignment_id} ended as {assignment.status} at {ended}"
    return PENDING, f"assignment {assignment_id} has not ended yet"


def _assignments(conn: Any, assignment_ids: set[str]) -> dict[str, Any]:
    """What `judge` needs of these assignments, by id."""
    rows = conn.execute(select(Assignment.assignment_id, Assignment.employee_id,
                               Assignment.status, Assignment.ended_at,
                               Assignment.completion_event_id)
                        .where(Assignment.assignment_id.in_(sorted(assignment_ids)))).all()
    return {row.assignment_id: row for row in rows}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return value


def utc(at: datetime) -> datetime:
    """Times are stored in UTC (SQLite keeps no offset); naive values are taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def storable_text(text: str) -> str:
    """`text` as any database takes it: a NUL or a lone surrogate written as an escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def source_record_id(topic: str, value: bytes | None) -> str | None:
    """The contract id of a record as read from its topic's JSON (models.events.record_id; a
    completion's event_id), or None when the value has none; NULs and lone surrogates
    escaped as `storable_text` does."""
    try:
        data = json.loads(value or b"")
        found = (str(data["event_id"]) if topic == topics.LESSON_COMPLETIONS
                 else topics.record_key(topic, data))
    except Exception:  # noqa: BLE001 - any malformed value simply has no id
        return None
    return storable_text(found)


def quarantine_row(*, topic: str, partition: int, offset: int, contract_topic: str,
                   key: bytes | None, value: bytes | None, error_type: str, kind: str,
                   reason: str, at: datetime) -> dict[str, Any]:
    """A `quarantine` row for a record read at (topic, partition, offset); every text made
    storable and cut to its column, so that keeping a record can never fail on its data."""
    line = next((t.strip() for t in storable_text(reason).splitlines() if t.strip()),
                error_type)
    return {"topic": topic, "kafka_partition": partition, "kafka_offset": offset,
            "contract_topic": contract_topic, "record_key": key, "value": value,
            "record_id": source_record_id(contract_topic, value),
            "error_type": storable_text(error_type)[:100], "kind": kind[:30],
            "reason": line[:500], "quarantined_at": utc(at)}


def _week(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _roll_up(days: dict[str, int], key: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for day, points in days.items():
        out[key(day)] = out.get(key(day), 0) + points
    return dict(sorted(out.items()))


def _base(r: BonusAward | PerformanceGap | LessonAssignment | LessonEffect) -> dict[str, Any]:
    return {"employee_id": r.employee_id, "team_id": r.team_id,
            "playbook_version": r.playbook_version}


def _award_row(r: BonusAward) -> dict[str, Any]:
    return {**_base(r), "award_id": r.award_id, "rule": r.rule, "points": r.points,
            "requested_points": r.requested_points, "period": r.period, "at": utc(r.at),
            "evidence": r.evidence.model_dump(mode="json")}


def _gap_row(r: PerformanceGap) -> dict[str, Any]:
    return {**_base(r), "gap_id": r.gap_id, "status": r.status, "standard": r.standard,
            "target": r.target, "at": utc(r.at), "evidence": r.evidence.model_dump(mode="json")}


def _assignment_row(r: LessonAssignment) -> dict[str, Any]:
    return {**_base(r), "assignment_id": r.assignment_id, "standard": r.standard,
            "lesson_id": r.lesson_id, "gap_id": r.gap_id, "assigned_at": utc(r.at),
            "due_at": utc(r.due_at), "evidence": r.evidence.model_dump(mode="json"),
            "status": "assigned"}


def _ending_row(r: LessonAssignment) -> dict[str, Any]:
    """An ending record as a `pending_endings` row (what an ending sets on its assignment)."""
    return {"assignment_id": r.assignment_id, "status": r.status,
            "ended_at": utc(r.ended_at or r.at), "completion_event_id": r.completion_event_id}


def _completion_row(c: LessonCompletion, outcome: str, reason: str) -> dict[str, Any]:
    return {"event_id": c.event_id, "assignment_id": c.assignment_id,
            "employee_id": c.employee_id, "completed_at": utc(c.completed_at),
            "outcome": outcome, "reason": reason}


def _effect_row(r: LessonEffect) -> dict[str, Any]:
    return {**_base(r), "effect_id": r.effect_id, "gap_id": r.gap_id,
            "assignment_id": r.assignment_id, "lesson_id": r.lesson_id,
            "standard": r.standard, "group_name": r.group, "window_size": r.window,
            "before_passes": r.before_passes, "before_n": r.before_n,
            "after_passes": r.after_passes, "after_n": r.after_n, "at": utc(r.at)}


# contract topic -> the record type the ledger reads from it
MODELS: dict[str, Any] = {"bonus-awards": BonusAward, "performance-gaps": PerformanceGap,
                          "lesson-assignments": LessonAssignment,
                          "lesson-effects": LessonEffect,
                          "lesson-completions": LessonCompletion}


def parse_records(items: Iterable[tuple[str, bytes]]) -> list[LedgerRecord]:
    """(contract topic name, JSON value) pairs to contract records, in order."""
    return [parse_record(topic, value) for topic, value in items]


def parse_record(topic: str, value: bytes) -> LedgerRecord:
    """One JSON value of a contract topic as its record (pydantic's ValidationError if it is
    not one)."""
    record: LedgerRecord = MODELS[topic].model_validate_json(value)
    return record


# ---- what a database can store ---------------------------------------------------------------

_INT_BITS = {BigInteger: 63, Integer: 31}  # PostgreSQL's bigint and integer


def check_record(record: LedgerRecord) -> None:
    """Raise Unstorable unless the record becomes rows that PostgreSQL and SQLite both store
    as they are: its times expressible in UTC, texts without NUL or lone surrogates and no
    longer than their columns, whole numbers within their columns, finite floats."""
    for name in type(record).model_fields:
        at = getattr(record, name)
        if isinstance(at, datetime):
            try:
                utc(at)
            except OverflowError:
                raise Unstorable(OVERFLOW, f"{name} {at.isoformat()} is out of range once "
                                 f"converted to UTC", "OverflowError") from None
    for table, row in _rows_of(record):
        for column in _columns(table):
            if column.key in row:
                column.check(row[column.key])


def _rows_of(record: LedgerRecord) -> list[tuple[Any, dict[str, Any]]]:
    """The (table, row) pairs `LedgerStore.write` makes of one record."""
    if isinstance(record, BonusAward):
        return [(Award, _award_row(record))]
    if isinstance(record, PerformanceGap):
        return [(Gap, _gap_row(record))]
    if isinstance(record, LessonAssignment):
        if record.status == "assigned":
            return [(Assignment, _assignment_row(record))]
        return [(PendingEnding, _ending_row(record))]
    if isinstance(record, LessonEffect):
        return [(Effect, _effect_row(record))]
    # the reason a judgement writes names only ids the row has already
    return [(Completion, _completion_row(record, PENDING, ""))]


@dataclass(frozen=True)
class _Column:
    """What a column takes, read once from its table."""

    key: str
    where: str  # table.column, for the reason
    nullable: bool
    json: bool
    length: int | None  # of a text
    bits: int  # of a whole number, sign excluded

    def check(self, value: Any) -> None:
        if value is None:
            if not self.nullable:
                raise Unstorable(MISSING, f"{self.where} has no value")
        elif self.json:
            _check_json(self.where, value)
        elif isinstance(value, str):
            _check_text(self.where, value)
            if self.length is not None and len(value) > self.length:
                raise Unstorable(TOO_LONG, f"{self.where} is {len(value)} characters long, "
                                 f"the column takes {self.length}")
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            if not -(2 ** self.bits) <= value < 2 ** self.bits:
                raise Unstorable(OUT_OF_RANGE, f"{self.where} {_shown(value)} is out of range "
                                 f"(a {self.bits + 1}-bit integer)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise Unstorable(INVALID_NUMBER, f"{self.where} is {value}")


@functools.cache
def _columns(table: Any) -> tuple[_Column, ...]:
    return tuple(_column(c) for c in table.__table__.columns)


def _column(column: Column[Any]) -> _Column:
    bits = next((b for kind, b in _INT_BITS.items() if isinstance(column.type, kind)), 63)
    return _Column(key=column.key, where=f"{column.table.name}.{column.name}",
                   nullable=bool(column.nullable), json=isinstance(column.type, JSON),
                   length=getattr(column.type, "length", None), bits=bits)


def _check_text(where: str, text: str) -> None:
    if "\x00" in text:
        raise Unstorable(INVALID_TEXT, f"{where} contains a NUL character: {_shown(text)}")
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable(INVALID_TEXT, f"{where} is not valid Unicode (a lone surrogate): "
                         f"{_shown(text)}") from None


def _check_json(where: str, value: Any) -> None:
    if isinstance(value, str):
        _check_text(where, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise Unstorable(INVALID_NUMBER, f"{where} holds {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_json(where, k)
            _check_json(where, v)
    elif isinstance(value, list):
        for v in value:
            _check_json(where, v)


def _shown(value: Any) -> str:
    text = storable_text(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


# ---- probing a database with a record known to be good ----------------------------------------

_PROBE = "frontline-probe"
_PROBE_AT = datetime(2026, 1, 1, tzinfo=UTC)


def probe_record(record: LedgerRecord) -> LedgerRecord:
    """A known-good record of the same kind as `record` (its type and, for gaps and
    assignments, its status). Written in a rolled-back transaction (`LedgerStore.probe`), it
    tells a database that refuses every record of a kind (a schema that is wrong) from one
    record the database refuses."""
    base: dict[str, Any] = {"employee_id": _PROBE, "team_id": _PROBE,
                            "playbook_version": _PROBE, "at": _PROBE_AT}
    evidence = Evidence(interaction_ids=[], statistic=_PROBE)
    if isinstance(record, BonusAward):
        return BonusAward(award_id=_PROBE, rule=_PROBE, points=0, requested_points=0,
                          period="2026-01-01", evidence=evidence, **base)
    if isinstance(record, PerformanceGap):
        return PerformanceGap(gap_id=_PROBE, standard=_PROBE, status=record.status,
                              target=0.0, evidence=evidence, **base)
    if isinstance(record, LessonAssignment):
        ended = record.status != "assigned"
        return LessonAssignment(
            assignment_id=_PROBE, lesson_id=_PROBE, lesson_title=_PROBE, standard=_PROBE,
            gap_id=_PROBE, due_at=_PROBE_AT, evidence=evidence, status=record.status,
            ended_at=_PROBE_AT if ended else None,
            completion_event_id=_PROBE if record.status == "completed" else None, **base)
    if isinstance(record, LessonEffect):
        return LessonEffect(effect_id=_PROBE, gap_id=_PROBE, assignment_id=None,
                            lesson_id=_PROBE, standard=_PROBE, group="lesson", window=1,
                            before_passes=0, before_n=1, after_passes=0, after_n=1, **base)
    return LessonCompletion(event_id=_PROBE, assignment_id=_PROBE, employee_id=_PROBE,
                            completed_at=_PROBE_AT)
