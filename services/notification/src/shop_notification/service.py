"""What the notification service does: record one notification per event, send it, list them.

Functions take the session as a keyword argument and never commit; the caller (a request or the
event handler in :mod:`shop_notification.events`) owns the transaction.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError
from shopkit.db import utcnow
from shopkit.messaging import Event
from shopkit.metrics import NOTIFICATION_DELIVERIES
from shopkit.schemas import decode_time_cursor, encode_time_cursor
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
    BUSY = "busy"  # another delivery holds a fresh claim on it and is sending it now
    RETRY = "retry"  # the send failed; the event should come again
    FAILED = "failed"  # given up for good


@dataclass(frozen=True)
class Claim:
    """What one send needs, read when the row was claimed, so no session is open while sending.
    ``attempt`` (the row's attempts after the claim) identifies the claim when it is settled."""

    notification_id: str
    attempt: int
    recipient: str
    subject: str
    body: str


MAX_ERROR = 200


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


async def claim(
    notification_id: str, *, recipient: str, claim_timeout: float, session: AsyncSession
) -> Claim | Outcome:
    """Claim a queued notification for one send (status 'sending', attempts + 1).

    The caller commits the claim and sends with no transaction open (on SQLite a write
    transaction holds the database's write lock, which must not wait on a mail relay), then
    settles it with :func:`finish_send`. A claim older than ``claim_timeout`` is taken over: its
    sender died mid-send, and leaving it would strand the notification.
    """
    now = utcnow()
    row = await repository.claim(
        session,
        notification_id,
        recipient=recipient,
        now=now,
        stale_before=now - timedelta(seconds=claim_timeout),
    )
    if row is not None:
        return Claim(
            notification_id=row.id,
            attempt=row.attempts,
            recipient=recipient,
            subject=row.subject,
            body=row.body,
        )
    current = await repository.get(session, notification_id)
    if current is not None and current.status == "sending":
        return Outcome.BUSY
    return Outcome.DONE_BEFORE


async def send_claimed(claim: Claim, *, transport: MailTransport, sender: str) -> MailError | None:
    """Hand the claimed notification to the relay; the error when it was not taken."""
    message = build_message(
        sender=sender,
        recipient=claim.recipient,
        subject=claim.subject,
        body=claim.body,
        message_id=claim.notification_id,
    )
    try:
        await transport.send(message)
    except MailError as exc:
        return exc
    return None


async def finish_send(
    claim: Claim,
    error: MailError | None,
    *,
    max_attempts: int,
    last_delivery: bool,
    session: AsyncSession,
) -> Outcome:
    """Settle a claim: sent, back to queued for a retry, or failed when out of attempts or
    deliveries (nothing would come back to retry it)."""
    if error is None:
        await repository.mark_sent(session, claim.notification_id, now=utcnow())
        NOTIFICATION_DELIVERIES.labels("sent").inc()
        return Outcome.SENT
    reason = _reason(str(error))
    if claim.attempt >= max_attempts or last_delivery:
        status, outcome = "failed", Outcome.FAILED
    else:
        status, outcome = "queued", Outcome.RETRY
    settled = await repository.settle_claim(
        session, claim.notification_id, attempt=claim.attempt, status=status, last_error=reason
    )
    if not settled:
        # Taken over as stale, or given up on: whoever holds it now settles it.
        log.warning(
            "notification %s: claim %d lost: %s", claim.notification_id, claim.attempt, reason
        )
        return Outcome.DONE_BEFORE
    NOTIFICATION_DELIVERIES.labels("failed" if outcome is Outcome.FAILED else "retried").inc()
    if outcome is Outcome.FAILED:
        log.error(
            "giving up on notification %s after %d attempts: %s",
            claim.notification_id,
            claim.attempt,
            reason,
        )
    else:
        log.warning(
            "notification %s not sent (attempt %d): %s",
            claim.notification_id,
            claim.attempt,
            reason,
        )
    return outcome


async def record_sent(notification_id: str, *, session: AsyncSession) -> None:
    """Record a send the relay accepted (used when settling its claim failed the first time)."""
    await repository.mark_sent(session, notification_id, now=utcnow())


async def mark_failed(notification_id: str, *, reason: str, session: AsyncSession) -> Outcome:
    """Give up on a notification that is not sent yet and will not be (unknown customer, or the
    event's last delivery could not send it). A send still under way that succeeds after this
    records 'sent' anyway, which is then the truth."""
    if await repository.mark_failed(session, notification_id, last_error=_reason(reason)):
        NOTIFICATION_DELIVERIES.labels("failed").inc()
        return Outcome.FAILED
    return Outcome.DONE_BEFORE


def _reason(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."


async def list_notifications(
    customer_id: str, *, limit: int, cursor: str | None, session: AsyncSession
) -> NotificationPage:
    after = decode_time_cursor(cursor) if cursor is not None else None
    rows = await repository.page_for_customer(session, customer_id, limit=limit + 1, after=after)
    items = [NotificationRead.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_time_cursor(last.created_at, last.id)
    return NotificationPage(items=items, next_cursor=next_cursor)


async def list_deliveries(order_id: str | None, *, session: AsyncSession) -> DeliveryList:
    rows = await repository.deliveries(session, order_id=order_id)
    return DeliveryList(
        items=[DeliveryRead.model_validate(row, from_attributes=True) for row in rows]
    )
