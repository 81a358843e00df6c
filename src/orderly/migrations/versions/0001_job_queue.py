"""Job queue: PgQueuer's tables, frozen at version 1.6.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

from orderly.migrations.helpers import execute_file

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    execute_file("pgqueuer_1_6_install.sql")
    # Admin listing pages jobs by status, newest first.
    op.execute("CREATE INDEX ix_pgqueuer_status_id ON pgqueuer (status, id DESC)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_pgqueuer_status_id")
    execute_file("pgqueuer_1_6_uninstall.sql")
