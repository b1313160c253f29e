"""What the notification service does: record one notification per event, send it, list them.

Functions take the session as a keyword argument and never commit; the caller (a request or the
event handler in :mod:`shop_notification.events`) owns the transaction.
"""

from __future__ import annotations

import enum
import logging
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from shopkit.db import utcnow
from shopkit.messaging import Event
from shopkit.schemas import decode_cursor, encode_cursor, invalid_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from shop_notification import repository
from shop_notification.mail import MailError, MailTransport, build_message
from shop_notification.models import Notification
from shop_notification.schemas import (
    DeliveryList,
    DeliveryRead,
    EventData,
    NotificationPage,
    NotificationRead,
    NotificationType,
    OrderCancelledData,
    OrderConfirmedData,
    PaymentDeclinedData,
)
from shop_notification.templates import render

log = logging.getLogger("shop_notification.service")

CHANNEL = "email"
MAX_EVENT_ID = 100

# Event subject -> the notification it gives and the shape of its data. Subjects not listed
# (payment.refunded, and whatever publishers add later) give no notification.
EVENT_TYPES: dict[str, tuple[NotificationType, type[EventData]]] = {
    "order.confirmed": ("order_confirmed", OrderConfirmedData),
    "order.cancelled": ("order_cancelled", OrderCancelledData),
    "payment.declined": ("payment_failed", PaymentDeclinedData),
}


class Outcome(enum.Enum):
    SENT = "sent"
    DONE_BEFORE = "done-before"  # sent or given up by an earlier delivery of the event
    RETRY = "retry"  # the send failed; the event should come again
    FAILED = "failed"  # given up for good


async def record_event(event: Event, *, session: AsyncSession) -> Notification | None:
    """The event's notification, recorded once however often the event is delivered.

    None when the event gives no notification: a subject we do not notify about, or data that
    can never make one (logged; redelivering it would not help).
    """
    spec = EVENT_TYPES.get(event.type)
    if spec is None:
        return None
    kind, data_model = spec
    if not event.id or len(event.id) > MAX_EVENT_ID:
        log.error("ignoring %s event with an unusable id", event.type)
        return None
    try:
        data = data_model.model_validate(event.data)
    except ValidationError as exc:
        log.error(
            "ignoring %s event %s: its data is not valid (%d errors)",
            event.type,
            event.id,
            exc.error_count(),
        )
        return None
    content = render(kind, data)
    candidate = Notification(
        id=str(uuid.uuid4()),
        event_id=event.id,
        type=kind,
        order_id=data.order_id,
        customer_id=data.customer_id,
        channel=CHANNEL,
        recipient=None,
        subject=content.subject,
        body=content.body,
        status="queued",
        attempts=0,
        created_at=utcnow(),
        sent_at=None,
    )
    return await repository.insert_if_absent(session, candidate)


async def send_notification(
    notification_id: str,
    *,
    recipient: str,
    session: AsyncSession,
    transport: MailTransport,
    sender: str,
    max_attempts: int,
) -> Outcome:
    """Send a queued notification once. The row stays locked while sending, so two deliveries
    of the same event (or two replicas) cannot both send it."""
    row = await repository.lock(session, notification_id)
    if row is None or row.status != "queued":
        return Outcome.DONE_BEFORE
    row.recipient = recipient
    row.attempts += 1
    message = build_message(
        sender=sender,
        recipient=recipient,
        subject=row.subject,
        body=row.body,
        message_id=row.id,
    )
    try:
        await transport.send(message)
    except MailError as exc:
        if row.attempts >= max_attempts:
            log.error(
                "giving up on notification %s after %d attempts: %s", row.id, row.attempts, exc
            )
            row.status = "failed"
            return Outcome.FAILED
        log.warning("notification %s not sent (attempt %d): %s", row.id, row.attempts, exc)
        return Outcome.RETRY
    row.status = "sent"
    row.sent_at = utcnow()
    return Outcome.SENT


async def mark_failed(notification_id: str, *, session: AsyncSession) -> Outcome:
    """Give up on a queued notification that can never be sent (the customer is unknown)."""
    row = await repository.lock(session, notification_id)
    if row is None or row.status != "queued":
        return Outcome.DONE_BEFORE
    row.status = "failed"
    return Outcome.FAILED


async def list_notifications(
    customer_id: str, *, limit: int, cursor: str | None, session: AsyncSession
) -> NotificationPage:
    after = _position(cursor) if cursor is not None else None
    rows = await repository.page_for_customer(session, customer_id, limit=limit + 1, after=after)
    items = [NotificationRead.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"created_at": last.created_at.isoformat(), "id": last.id})
    return NotificationPage(items=items, next_cursor=next_cursor)


def _position(cursor: str) -> tuple[datetime, str]:
    position = decode_cursor(cursor, {"created_at", "id"})
    created_at, last_id = position["created_at"], position["id"]
    if not isinstance(created_at, str) or not isinstance(last_id, str):
        raise invalid_cursor()
    try:
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise invalid_cursor()
        return moment.astimezone(UTC), last_id
    except (ValueError, OverflowError) as exc:
        raise invalid_cursor() from exc


async def list_deliveries(order_id: str | None, *, session: AsyncSession) -> DeliveryList:
    rows = await repository.deliveries(session, order_id=order_id)
    return DeliveryList(
        items=[DeliveryRead.model_validate(row, from_attributes=True) for row in rows]
    )
