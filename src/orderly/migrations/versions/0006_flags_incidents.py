"""Feature flags, release plans, guard outcomes, incidents and SLO request counts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
JSONB = postgresql.JSONB()


def _ts(name: str, *, default: bool = True, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "flag",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("definition", JSONB, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_flag"),
    )
    op.create_table(
        "flag_segment",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("definition", JSONB, nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_flag_segment"),
    )
    op.create_table(
        "flag_config_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flag_config_version"),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute("INSERT INTO flag_config_version (id, version) VALUES (1, 0)")
    op.create_table(
        "flag_release",
        sa.Column("flag_name", sa.String(255), nullable=False),
        sa.Column("stages", JSONB, nullable=False),
        sa.Column("guard", JSONB, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        _ts("next_at", default=False, nullable=True),
        sa.Column("paused_remaining_seconds", sa.Double(), nullable=True),
        sa.Column("history", JSONB, nullable=False),
        sa.Column("incident_id", UUID, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("flag_name", name="pk_flag_release"),
        sa.ForeignKeyConstraint(
            ["flag_name"], ["flag.name"], name="fk_flag_release_flag_name_flag", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "status IN ('running', 'paused', 'completed', 'rolled_back')", name="status_known"
        ),
    )
    op.create_table(
        "flag_outcome",
        sa.Column("flag_name", sa.String(255), nullable=False),
        sa.Column("cohort", sa.String(3), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("flag_name", "cohort", "bucket", name="pk_flag_outcome"),
        sa.CheckConstraint("cohort IN ('on', 'off')", name="cohort_known"),
    )
    op.create_table(
        "incident",
        sa.Column("id", UUID, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(4), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("commander_id", UUID, nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("impact", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("lessons_learned", sa.Text(), nullable=True),
        sa.Column("action_items", JSONB, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
        _ts("started_at", default=False),
        _ts("stabilized_at", default=False, nullable=True),
        _ts("closed_at", default=False, nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_incident"),
        sa.CheckConstraint("severity IN ('SEV1', 'SEV2', 'SEV3', 'SEV4')", name="severity_known"),
        sa.CheckConstraint("status IN ('active', 'stable', 'closed')", name="status_known"),
        sa.CheckConstraint("source IN ('manual', 'guard', 'alert', 'slo')", name="source_known"),
    )
    op.create_index(
        "uq_incident_open_dedupe_key",
        "incident",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL AND status <> 'closed'"),
    )
    op.create_index("ix_incident_status_started", "incident", ["status", "started_at"])
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("incident_id", UUID, nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_timeline"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name="fk_incident_timeline_incident_id_incident",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_incident_timeline_incident_id", "incident_timeline", ["incident_id"])
    op.create_table(
        "slo_request_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("series", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(4), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "series", "outcome", name="pk_slo_request_minute"),
        sa.CheckConstraint("series IN ('availability', 'order_latency')", name="series_known"),
        sa.CheckConstraint("outcome IN ('good', 'bad')", name="outcome_known"),
    )


def downgrade() -> None:
    op.drop_table("slo_request_minute")
    op.drop_table("incident_timeline")
    op.drop_table("incident")
    op.drop_table("flag_outcome")
    op.drop_table("flag_release")
    op.drop_table("flag_config_version")
    op.drop_table("flag_segment")
    op.drop_table("flag")
