"""The outbox keeps the trace context of the request that wrote each row.

The relay publishes after that request is over, so the context travels with the row and then in
the message headers; the consumer's span continues the producer's trace. Rows written before
(and rows written while tracing is off) have none.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("trace_context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("trace_context")
