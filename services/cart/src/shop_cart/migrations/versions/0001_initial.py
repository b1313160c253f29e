"""Carts and cart lines.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from shopkit.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carts",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_carts"),
    )
    op.create_table(
        "cart_lines",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("added_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "product_id", name="pk_cart_lines"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["carts.customer_id"],
            name="fk_cart_lines_customer_id_carts",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("quantity BETWEEN 1 AND 99", name="ck_cart_lines_quantity_range"),
    )


def downgrade() -> None:
    op.drop_table("cart_lines")
    op.drop_table("carts")
