"""The inbox: every event the consumers handled, with its delivery counts.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from shopkit.db import UtcDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("first_delivery_at", UtcDateTime(), nullable=False),
        sa.Column("last_delivery_at", UtcDateTime(), nullable=False),
        sa.Column("handled_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "consumer"),
        sa.CheckConstraint("status IN ('received', 'handled', 'dead')", name="ck_inbox_status"),
    )
    # Events handled before the inbox existed are known by their notifications, so the inbox
    # agrees with the notifications table from the start. (Events that gave no notification
    # left no trace to copy; a redelivery of one would find its subject gives none anyway.)
    op.execute(
        """
        INSERT INTO inbox (event_id, consumer, subject, status, deliveries, duplicates,
                           first_delivery_at, last_delivery_at, handled_at)
        SELECT event_id,
               CASE type WHEN 'payment_failed' THEN 'notification-payments'
                         ELSE 'notification-orders' END,
               CASE type WHEN 'order_confirmed' THEN 'order.confirmed'
                         WHEN 'order_cancelled' THEN 'order.cancelled'
                         ELSE 'payment.declined' END,
               CASE WHEN status IN ('sent', 'failed') THEN 'handled' ELSE 'received' END,
               CASE WHEN attempts > 1 THEN attempts ELSE 1 END,
               0,
               created_at,
               COALESCE(sent_at, created_at),
               CASE WHEN status IN ('sent', 'failed') THEN COALESCE(sent_at, created_at) END
        FROM notifications
        """
    )


def downgrade() -> None:
    op.drop_table("inbox")
