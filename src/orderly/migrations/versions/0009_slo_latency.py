"""slo_latency_minute: per-minute latency histograms of /v1 requests (the console's charts)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

Every API process adds its per-minute bucket counts (as it does for
``slo_request_minute``), so p50/p99 over the last hours hold for all
processes together, not for the one that happens to answer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slo_latency_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "bucket", name="pk_slo_latency_minute"),
    )


def downgrade() -> None:
    op.drop_table("slo_latency_minute")
