"""Lesson outcomes as the worker decides them: how an assignment ended (`ended_at`; endings
that arrive before their assignment wait in `pending_endings`), lesson-effect measurements,
and no more per-assignment pass rates (they measured regression to the mean, not the lesson).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(200)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("ended_at", TS, nullable=True))
        batch.drop_column("pass_rate_after")
        batch.drop_column("pass_rate_before")
    # Assignments 0002 completed end when they were completed.
    assignments = sa.table("assignments", sa.column("status", sa.String(10)),
                           sa.column("completed_at", TS), sa.column("ended_at", TS))
    op.execute(assignments.update().where(assignments.c.status == "completed")
               .values(ended_at=assignments.c.completed_at))
    op.create_table(
        "pending_endings",
        sa.Column("assignment_id", ID, primary_key=True),
        sa.Column("status", sa.String(10), primary_key=True),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("completion_event_id", ID, nullable=True),
    )
    op.create_table(
        "lesson_effects",
        sa.Column("effect_id", ID, primary_key=True),
        sa.Column("gap_id", ID, nullable=False, index=True),
        sa.Column("assignment_id", ID, nullable=True),
        sa.Column("employee_id", ID, nullable=False, index=True),
        sa.Column("team_id", ID, nullable=False, index=True),
        sa.Column("lesson_id", sa.String(200), nullable=False, index=True),
        sa.Column("standard", sa.String(100), nullable=False),
        sa.Column("group_name", sa.String(10), nullable=False),
        sa.Column("window_size", sa.Integer, nullable=False),
        sa.Column("before_passes", sa.Integer, nullable=False),
        sa.Column("before_n", sa.Integer, nullable=False),
        sa.Column("after_passes", sa.Integer, nullable=False),
        sa.Column("after_n", sa.Integer, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("playbook_version", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lesson_effects")
    op.drop_table("pending_endings")
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("pass_rate_before", sa.Float, nullable=True))
        batch.add_column(sa.Column("pass_rate_after", sa.Float, nullable=True))
        batch.drop_column("ended_at")
