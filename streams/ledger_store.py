"""Writing decisions into the ledger exactly once, and reading balances back.

A batch is written in one transaction. Awards, gaps and assignments are inserted or ignored
by their deterministic ids, so a re-delivered or replayed record never counts twice, on SQLite
and PostgreSQL alike. A lesson completion is applied to its assignment at most once; one that
arrives before its assignment is kept as pending and applied when the assignment arrives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.events import BonusAward, LessonAssignment, LessonCompletion, PerformanceGap
from models.ledger import Assignment, Award, Completion, Gap

LedgerRecord = BonusAward | PerformanceGap | LessonAssignment | LessonCompletion

APPLIED, REJECTED, PENDING = "applied", "rejected", "pending"


@dataclass
class WriteResult:
    inserted: dict[str, int] = field(default_factory=dict)  # table -> new rows
    completions: Counter[str] = field(default_factory=Counter)  # outcome -> count


def pass_rate(evidence: dict[str, Any]) -> float | None:
    sample = evidence.get("sample")
    return round(evidence.get("passes", 0) / sample, 4) if sample else None


class LedgerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        if dialect == "postgresql":
            self._insert = postgresql.insert
        elif dialect == "sqlite":
            self._insert = sqlite.insert
        else:
            raise ValueError(f"the ledger supports PostgreSQL and SQLite, not {dialect}")

    # ---- writing --------------------------------------------------------------------------

    def write(self, records: Sequence[LedgerRecord]) -> WriteResult:
        """Write a batch in one transaction; safe to repeat with the same records."""
        result = WriteResult()
        awards = [_award_row(r) for r in records if isinstance(r, BonusAward)]
        gaps = [_gap_row(r) for r in records if isinstance(r, PerformanceGap)]
        assignments = [_assignment_row(r) for r in records if isinstance(r, LessonAssignment)]
        completions = [r for r in records if isinstance(r, LessonCompletion)]
        with self.engine.begin() as conn:
            for table, rows in ((Award, awards), (Gap, gaps), (Assignment, assignments)):
                if rows:
                    stmt = self._insert(table).on_conflict_do_nothing()
                    result.inserted[table.__tablename__] = conn.execute(stmt, rows).rowcount
            for gap in (g for g in gaps if g["status"] == "closed"):
                self._measure_after(conn, gap["gap_id"])
            for c in completions:
                outcome = self._complete(conn, c)
                if outcome is not None:
                    result.completions[outcome] += 1
            if assignments:
                self._apply_pending(conn, [a["assignment_id"] for a in assignments], result)
        return result

    def _complete(self, conn: Any, c: LessonCompletion) -> str | None:
        """Record a completion and apply it; None when this event was seen before."""
        if conn.execute(select(Completion.event_id)
                        .where(Completion.event_id == c.event_id)).first() is not None:
            return None
        outcome, reason = self._apply(conn, c.assignment_id, c.employee_id, c.completed_at,
                                      c.event_id)
        conn.execute(self._insert(Completion).on_conflict_do_nothing(), [{
            "event_id": c.event_id, "assignment_id": c.assignment_id,
            "employee_id": c.employee_id, "completed_at": utc(c.completed_at),
            "outcome": outcome, "reason": reason}])
        return outcome

    @staticmethod
    def _apply(conn: Any, assignment_id: str, employee_id: str, completed_at: datetime,
               event_id: str) -> tuple[str, str]:
        row = conn.execute(select(Assignment.employee_id, Assignment.status,
                                  Assignment.completion_event_id)
                           .where(Assignment.assignment_id == assignment_id)).first()
        if row is None:
            return PENDING, f"assignment {assignment_id} is not in the ledger yet"
        if row.employee_id != employee_id:
            return REJECTED, (f"assignment {assignment_id} belongs to employee "
                              f"{row.employee_id}, not {employee_id}")
        if row.status == "completed":
            return REJECTED, (f"assignment {assignment_id} was already completed by "
                              f"{row.completion_event_id}")
        conn.execute(update(Assignment).where(Assignment.assignment_id == assignment_id)
                     .values(status="completed", completed_at=utc(completed_at),
                             completion_event_id=event_id))
        gap_id = conn.execute(select(Assignment.gap_id)
                              .where(Assignment.assignment_id == assignment_id)).scalar_one()
        LedgerStore._measure_after(conn, gap_id)
        return APPLIED, ""

    @staticmethod
    def _measure_after(conn: Any, gap_id: str) -> None:
        """Lesson effectiveness: an assignment completed before its gap closed gets the pass
        rate the gap closed with. Depends only on what is stored, so any order gives it."""
        closed = conn.execute(select(Gap.at, Gap.evidence)
                              .where(Gap.gap_id == gap_id, Gap.status == "closed")).first()
        if closed is None:
            return
        conn.execute(update(Assignment)
                     .where(Assignment.gap_id == gap_id, Assignment.status == "completed",
                            Assignment.completed_at <= utc(closed.at),
                            Assignment.pass_rate_after.is_(None))
                     .values(pass_rate_after=pass_rate(closed.evidence)))

    def _apply_pending(self, conn: Any, assignment_ids: list[str], result: WriteResult) -> None:
        pending = conn.execute(select(Completion)
                               .where(Completion.outcome == PENDING,
                                      Completion.assignment_id.in_(assignment_ids))
                               .order_by(Completion.completed_at, Completion.event_id)).all()
        for c in pending:
            outcome, reason = self._apply(conn, c.assignment_id, c.employee_id, c.completed_at,
                                          c.event_id)
            conn.execute(update(Completion).where(Completion.event_id == c.event_id)
                         .values(outcome=outcome, reason=reason))
            result.completions[outcome] += 1

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
                       "completions": Completion.completed_at}[table]
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

    def ids(self, table: type[Award | Gap | Assignment]) -> set[str]:
        column = {Award: Award.award_id, Gap: Gap.gap_id,
                  Assignment: Assignment.assignment_id}[table]
        with self.engine.connect() as conn:
            return set(conn.execute(select(column)).scalars())

    def count(self, table: type[Any]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


TABLES: dict[str, Any] = {"awards": Award, "gaps": Gap, "assignments": Assignment,
                          "completions": Completion}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return value


def utc(at: datetime) -> datetime:
    """Times are stored in UTC (SQLite keeps no offset); naive values are taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _week(day: str) -> str:
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _roll_up(days: dict[str, int], key: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for day, points in days.items():
        out[key(day)] = out.get(key(day), 0) + points
    return dict(sorted(out.items()))


def _base(r: BonusAward | PerformanceGap | LessonAssignment) -> dict[str, Any]:
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
    evidence = r.evidence.model_dump(mode="json")
    return {**_base(r), "assignment_id": r.assignment_id, "standard": r.standard,
            "lesson_id": r.lesson_id, "gap_id": r.gap_id, "assigned_at": utc(r.at),
            "due_at": utc(r.due_at), "evidence": evidence, "status": "assigned",
            "pass_rate_before": pass_rate(evidence)}


def parse_records(items: Iterable[tuple[str, bytes]]) -> list[LedgerRecord]:
    """(contract topic name, JSON value) pairs to contract records, in order."""
    models: dict[str, Any] = {"bonus-awards": BonusAward, "performance-gaps": PerformanceGap,
                              "lesson-assignments": LessonAssignment,
                              "lesson-completions": LessonCompletion}
    return [models[topic].model_validate_json(value) for topic, value in items]
