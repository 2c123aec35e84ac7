"""Lesson lifecycle: completions, completion time and lesson-effectiveness pass rates.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(200)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("completed_at", TS, nullable=True))
        batch.add_column(sa.Column("completion_event_id", ID, nullable=True))
        batch.add_column(sa.Column("pass_rate_before", sa.Float, nullable=True))
        batch.add_column(sa.Column("pass_rate_after", sa.Float, nullable=True))
    # Rows written by 0001 get their "before" pass rate from the evidence they carry.
    assignments = sa.table("assignments", sa.column("assignment_id", ID),
                           sa.column("evidence", sa.JSON),
                           sa.column("pass_rate_before", sa.Float))
    conn = op.get_bind()
    for assignment_id, evidence in conn.execute(
            sa.select(assignments.c.assignment_id, assignments.c.evidence)).all():
        rate = pass_rate(evidence)
        if rate is not None:
            conn.execute(assignments.update()
                         .where(assignments.c.assignment_id == assignment_id)
                         .values(pass_rate_before=rate))
    op.create_table(
        "completions",
        sa.Column("event_id", ID, primary_key=True),
        sa.Column("assignment_id", ID, nullable=False, index=True),
        sa.Column("employee_id", ID, nullable=False, index=True),
        sa.Column("completed_at", TS, nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("completions")
    with op.batch_alter_table("assignments") as batch:
        for name in ("pass_rate_after", "pass_rate_before", "completion_event_id",
                     "completed_at"):
            batch.drop_column(name)


def pass_rate(evidence: object) -> float | None:
    if isinstance(evidence, str):  # JSON read back as text on some dialects
        import json
        evidence = json.loads(evidence)
    if isinstance(evidence, dict) and evidence.get("sample"):
        return round(evidence.get("passes", 0) / evidence["sample"], 4)
    return None
