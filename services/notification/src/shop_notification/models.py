"""Tables of the notification service: one row per event, whatever its delivery count, and the
inbox of the events its consumers handled."""

from __future__ import annotations

from datetime import datetime

from shopkit.db import UtcDateTime
from shopkit.messaging import inbox_table
from sqlalchemy import CheckConstraint, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData()


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # The event id is the idempotency key: a redelivered or republished event finds its row.
        UniqueConstraint("event_id", name="uq_notifications_event_id"),
        # 'sending' is internal: a delivery has claimed the row and is talking to the relay (see
        # repository.claim); the public API shows it as 'queued'.
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed')", name="ck_notifications_status"
        ),
        CheckConstraint(
            "type IN ('order_confirmed', 'order_cancelled', 'payment_failed')",
            name="ck_notifications_type",
        ),
        # Serves the customer's list, newest first, keyset-paginated on (created_at, id).
        Index("ix_notifications_customer_created", "customer_id", "created_at", "id"),
        Index("ix_notifications_order", "order_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    # Unknown until the user service answers; the address actually used once a send is tried.
    recipient: Mapped[str | None] = mapped_column(String(320), nullable=True)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # When the current send began (status 'sending'); a claim older than the claim timeout
    # belongs to a sender that died, and another delivery may take it over.
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Why the last try did not send it (a retry still queued, or the reason it failed).
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)


# Every event a consumer handled, notification or not (shopkit.messaging.Inbox): a redelivered
# event found here as handled is acknowledged without running the handler again.
inbox = inbox_table(Base.metadata)
