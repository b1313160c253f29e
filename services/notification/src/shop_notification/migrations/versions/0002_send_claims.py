"""Send claims: the 'sending' status, claimed_at and last_error.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from shopkit.db import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode rebuilds the table.
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("claimed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("last_error", sa.String(200), nullable=True))
        batch.drop_constraint("ck_notifications_status", type_="check")
        batch.create_check_constraint(
            "ck_notifications_status", "status IN ('queued', 'sending', 'sent', 'failed')"
        )


def downgrade() -> None:
    # A send interrupted by the downgrade is simply tried again.
    op.execute("UPDATE notifications SET status = 'queued' WHERE status = 'sending'")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("ck_notifications_status", type_="check")
        batch.create_check_constraint(
            "ck_notifications_status", "status IN ('queued', 'sent', 'failed')"
        )
        batch.drop_column("last_error")
        batch.drop_column("claimed_at")
