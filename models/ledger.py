"""The ledger's tables (SQLAlchemy 2): every decision Frontline published, keyed by its
deterministic id, the lesson lifecycle as the worker decided it, lesson-effect measurements,
and the quarantine of records the writer could not store. The schema itself is created and
upgraded by the Alembic migrations in models/migrations; these classes must match the newest
revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
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
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class Gap(Base):
    __tablename__ = "gaps"

    gap_id: Mapped[str] = mapped_column(ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), primary_key=True)  # opened|deferred|closed
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    team_id: Mapped[str] = mapped_column(ID, index=True)
    standard: Mapped[str] = mapped_column(String(100))
    target: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook_version: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


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
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    # lifecycle, from the worker's records: assigned -> completed | expired | superseded |
    # cancelled (final); the ledger's own sweep marks an assigned one past its due time overdue
    status: Mapped[str] = mapped_column(String(10), default="assigned")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completion_event_id: Mapped[str | None] = mapped_column(ID)


class PendingEnding(Base):
    """An assignment's ending record that arrived before the assignment itself (the topics
    keep them in order, a replay or a restore may not); applied when the assignment comes."""

    __tablename__ = "pending_endings"

    assignment_id: Mapped[str] = mapped_column(ID, primary_key=True)
    status: Mapped[str] = mapped_column(String(10), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completion_event_id: Mapped[str | None] = mapped_column(ID)


class Completion(Base):
    """Every lesson-completion record seen, applied or not (and why not)."""

    __tablename__ = "completions"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    assignment_id: Mapped[str] = mapped_column(ID, index=True)
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # applied (the worker completed its assignment with it) | rejected | pending
    outcome: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text, default="")


class Effect(Base):
    """One lesson-effect measurement (models.events.LessonEffect): a gap's standard before
    and after its lesson was completed (group `lesson`) or over the same span without one
    (group `comparison`)."""

    __tablename__ = "lesson_effects"

    effect_id: Mapped[str] = mapped_column(ID, primary_key=True)
    gap_id: Mapped[str] = mapped_column(ID, index=True)
    assignment_id: Mapped[str | None] = mapped_column(ID)
    employee_id: Mapped[str] = mapped_column(ID, index=True)
    team_id: Mapped[str] = mapped_column(ID, index=True)
    lesson_id: Mapped[str] = mapped_column(String(200), index=True)
    standard: Mapped[str] = mapped_column(String(100))
    # `group` and `window` are SQL keywords: named so that plain SQL needs no quoting
    group_name: Mapped[str] = mapped_column(String(10))  # lesson | comparison
    window_size: Mapped[int] = mapped_column(Integer)
    before_passes: Mapped[int] = mapped_column(Integer)
    before_n: Mapped[int] = mapped_column(Integer)
    after_passes: Mapped[int] = mapped_column(Integer)
    after_n: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    playbook_version: Mapped[str] = mapped_column(String(100))


class Quarantined(Base):
    """A record the ledger writer read but could not turn into rows or store (a date that
    overflows in UTC, a NUL in a text, a number too big for its column, not JSON ...), kept
    byte for byte with the reason, so that one record never stops or stalls the writer and
    nothing is lost silently. One row per position on the broker: a re-delivery adds none."""

    __tablename__ = "quarantine"

    # where it was read: the topic as named on the broker, partition and offset
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    kafka_partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    kafka_offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contract_topic: Mapped[str] = mapped_column(String(100))  # e.g. lesson-completions
    record_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)  # null: a tombstone
    # the contract id (award_id, gap_id:status ...) when the JSON has one, for reconcile
    record_id: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str] = mapped_column(String(100))  # the exception's class name
    kind: Mapped[str] = mapped_column(String(30))  # overflow, invalid_text, unparseable ...
    reason: Mapped[str] = mapped_column(Text)  # one line
    quarantined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
