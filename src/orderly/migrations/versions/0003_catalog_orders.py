"""Catalog (products, stock movements) and orders (orders, lines, status history).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "product",
        sa.Column("id", UUID, nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("low_stock_threshold", sa.Integer(), nullable=False, server_default="5"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="true"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_product"),
        sa.UniqueConstraint("sku", name="uq_product_sku"),
        sa.CheckConstraint("stock >= 0", name="ck_product_stock_not_negative"),
        sa.CheckConstraint("price_cents >= 0", name="ck_product_price_not_negative"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_product_currency_iso"),
    )
    op.create_table(
        "stock_movement",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("stock_after", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("order_id", UUID, nullable=True),
        sa.Column("actor_id", UUID, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stock_movement"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name="fk_stock_movement_product_id_product"
        ),
    )
    op.create_index("ix_stock_movement_product_id", "stock_movement", ["product_id"])
    op.create_index("ix_stock_movement_order_id", "stock_movement", ["order_id"])

    op.create_table(
        "sales_order",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("shipping_address", sa.Text(), nullable=False),
        sa.Column("pii_key_id", sa.String(32), nullable=False),
        sa.Column("payment_method", sa.String(16), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_sales_order"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name="fk_sales_order_user_id_user_account",
            ondelete="RESTRICT",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')",
            name="ck_sales_order_status_known",
        ),
        sa.CheckConstraint("total_cents >= 0", name="ck_sales_order_total_not_negative"),
    )
    op.create_index("ix_sales_order_user_created", "sales_order", ["user_id", "created_at", "id"])
    op.create_index("ix_sales_order_status_created", "sales_order", ["status", "created_at", "id"])
    op.create_index("ix_sales_order_pii_key_id", "sales_order", ["pii_key_id"])

    op.create_table(
        "order_item",
        sa.Column("order_id", UUID, nullable=False),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "product_id", name="pk_order_item"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["sales_order.id"],
            name="fk_order_item_order_id_sales_order",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name="fk_order_item_product_id_product"
        ),
        sa.CheckConstraint("quantity > 0", name="ck_order_item_quantity_positive"),
    )
    op.create_table(
        "order_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("order_id", UUID, nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("actor_id", UUID, nullable=True),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_order_event"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["sales_order.id"],
            name="fk_order_event_order_id_sales_order",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_order_event_order_id", "order_event", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_event")
    op.drop_table("order_item")
    op.drop_table("sales_order")
    op.drop_table("stock_movement")
    op.drop_table("product")
