"""Analytics: product figures rolled up over aligned blocks of 2, 4, … 2048 days.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

The summary's top products over any range then read O(log range) blocks per
product instead of one row per product and day. The new table starts empty,
so the watermark is cleared: the next refresh is a full rebuild, which fills
it (until then the summary tables are as they were; only the top products
would be short of the blocks). An index on ``analytics_product_day.day`` lets
a refresh read and clear a day's product rows without scanning the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_product_span",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("product_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "level", "first_day", "currency", "product_id", name="pk_analytics_product_span"
        ),
    )
    # A refresh finds a day's product rows in every currency by the day alone.
    op.create_index("ix_analytics_product_day_day", "analytics_product_day", ["day"])
    op.execute("UPDATE analytics_state SET watermark = NULL")


def downgrade() -> None:
    op.drop_index("ix_analytics_product_day_day", table_name="analytics_product_day")
    op.drop_table("analytics_product_span")
