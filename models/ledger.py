"""The ledger's tables (SQLAlchemy 2): every decision Frontline published, keyed by its
deterministic id, and the lesson lifecycle. The schema itself is created and upgraded by the
Alembic migrations in models/migrations; these classes must match the newest revision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(200)


class Base(DeclarativeBase):
    pass


class Award(Base):
    __tablename__ = "awards"

    award_id: Mapped[str] = mapped_column(ID, primary_key=True)
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    team_id: Mapped[str] = mapped_column(ID, index=True)
    rule: Mapped[str] = mapped_column(String(100))
    points: Mapped[int] = mapped_column(Integer)
    requested_points: Mapped[int] = mapped_column(Integer)
    period: Mapped[str] = mapped_column(String(10), index=True)  # day in the playbook's zone
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook_version: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict] = mapped_column(JSON)


class Gap(Base):
    __tablename__ = "gaps"

    gap_id: Mapped[str] = mapped_column(ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), primary_key=True)  # opened | closed
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    team_id: Mapped[str] = mapped_column(ID, index=True)
    standard: Mapped[str] = mapped_column(String(100))
    target: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook_version: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict] = mapped_column(JSON)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (Index("ix_assignments_status_due", "status", "due_at"),)

    assignment_id: Mapped[str] = mapped_column(ID, primary_key=True)
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    team_id: Mapped[str] = mapped_column(ID, index=True)
    standard: Mapped[str] = mapped_column(String(100))
    lesson_id: Mapped[str] = mapped_column(String(200))
    gap_id: Mapped[str] = mapped_column(ID, index=True)
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook_version: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict] = mapped_column(JSON)
    # lifecycle: assigned -> completed, or assigned -> overdue (-> completed late)
    status: Mapped[str] = mapped_column(String(10), default="assigned")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completion_event_id: Mapped[str | None] = mapped_column(ID)
    # lesson effectiveness: pass rate on the standard when assigned, and when its gap closed
    pass_rate_before: Mapped[float | None] = mapped_column(Float)
    pass_rate_after: Mapped[float | None] = mapped_column(Float)


class Completion(Base):
    """Every lesson-completion record seen, applied or not (and why not)."""

    __tablename__ = "completions"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    assignment_id: Mapped[str] = mapped_column(ID, index=True)
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(10))  # applied | rejected
    reason: Mapped[str] = mapped_column(Text, default="")
