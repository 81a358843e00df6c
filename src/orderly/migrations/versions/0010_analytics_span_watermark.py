"""analytics_state.span_watermark: the product blocks keep their own watermark

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Found by tests/test_rolling_deploy.py: 0008 cleared the watermark so that the
next refresh would be a full rebuild and fill ``analytics_product_span``. During
the rolling deploy the previous release's workers still refresh every minute;
one of them took that full rebuild without knowing the blocks and set the
watermark again, so today's incremental refreshes never filled the blocks for
the history before it (top products short until the nightly rebuild). Every
incremental refresh of an older release moves the watermark past rows in the
same way.

Expand only: a nullable column no older release reads or writes. A refresh of
this release rebuilds the blocks of every day any release refreshed since the
blocks' own watermark (all of them while it is NULL, once after this upgrade).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "analytics_state",
        sa.Column("span_watermark", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("analytics_state", "span_watermark")
