"""The quarantine: records the ledger writer read but could not turn into rows or store, kept
byte for byte with the reason, one row per (topic, partition, offset).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True),
        sa.Column("kafka_offset", sa.BigInteger, primary_key=True),
        sa.Column("contract_topic", sa.String(100), nullable=False),
        sa.Column("record_key", sa.LargeBinary, nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=True),
        sa.Column("record_id", sa.Text, nullable=True),
        sa.Column("error_type", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantine")
