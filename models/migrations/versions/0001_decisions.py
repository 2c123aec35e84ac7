"""Decisions: awards, gaps and lesson assignments, keyed by their deterministic ids.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(200)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "awards",
        sa.Column("award_id", ID, primary_key=True),
        sa.Column("employee_id", ID, nullable=False, index=True),
        sa.Column("team_id", ID, nullable=False, index=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("requested_points", sa.Integer, nullable=False),
        sa.Column("period", sa.String(10), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("playbook_version", sa.String(100), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_table(
        "gaps",
        sa.Column("gap_id", ID, primary_key=True),
        sa.Column("status", sa.String(10), primary_key=True),
        sa.Column("employee_id", ID, nullable=False, index=True),
        sa.Column("team_id", ID, nullable=False, index=True),
        sa.Column("standard", sa.String(100), nullable=False),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("playbook_version", sa.String(100), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("assignment_id", ID, primary_key=True),
        sa.Column("employee_id", ID, nullable=False, index=True),
        sa.Column("team_id", ID, nullable=False, index=True),
        sa.Column("standard", sa.String(100), nullable=False),
        sa.Column("lesson_id", sa.String(200), nullable=False),
        sa.Column("gap_id", ID, nullable=False, index=True),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("playbook_version", sa.String(100), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="assigned"),
    )
    op.create_index("ix_assignments_status_due", "assignments", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_assignments_status_due", "assignments")
    op.drop_table("assignments")
    op.drop_table("gaps")
    op.drop_table("awards")
