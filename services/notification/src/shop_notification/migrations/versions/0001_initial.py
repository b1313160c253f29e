"""The notifications table.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from shopkit.db import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_notifications_event_id"),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed')", name="ck_notifications_status"
        ),
        sa.CheckConstraint(
            "type IN ('order_confirmed', 'order_cancelled', 'payment_failed')",
            name="ck_notifications_type",
        ),
    )
    op.create_index(
        "ix_notifications_customer_created",
        "notifications",
        ["customer_id", "created_at", "id"],
    )
    op.create_index("ix_notifications_order", "notifications", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_order", table_name="notifications")
    op.drop_index("ix_notifications_customer_created", table_name="notifications")
    op.drop_table("notifications")
