"""The event side of the service: durable JetStream consumers feeding one handler.

The handler is to events what a route is to requests: it owns the transactions and calls the
service. Raising makes the kit's consumer nak the message, so JetStream redelivers it with
backoff; returning acks it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shopkit.app import Runtime
from shopkit.messaging import Event, consume

from shop_notification import service
from shop_notification.clients.user import UserClient
from shop_notification.errors import DeliveryDeferred
from shop_notification.mail import MailTransport
from shop_notification.settings import NotificationSettings

log = logging.getLogger("shop_notification.events")


@dataclass(frozen=True)
class Consumer:
    durable: str
    stream: str
    subject: str


CONSUMERS = (
    Consumer(durable="notification-orders", stream="ORDERS", subject="order.>"),
    Consumer(durable="notification-payments", stream="PAYMENTS", subject="payment.>"),
)


class NotificationHandler:
    def __init__(
        self, runtime: Runtime, settings: NotificationSettings, transport: MailTransport
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._transport = transport

    async def __call__(self, event: Event) -> None:
        db = self._runtime.db
        # Recording comes first and alone: the customer sees the notification queued even while
        # the user service or the mail relay is down, and no lock is held across the lookup.
        async with db.session() as session:
            row = await service.record_event(event, session=session)
            pending = row if row is not None and row.status == "queued" else None
        if pending is None:
            return
        # PeerUnavailable propagates: the event comes back once the user service may be up.
        user = await self._runtime.client(UserClient).get_user(pending.customer_id)
        async with db.session() as session:
            if user is None:
                log.error("no account %s for notification %s", pending.customer_id, pending.id)
                await service.mark_failed(pending.id, session=session)
                return
            outcome = await service.send_notification(
                pending.id,
                recipient=user.email,
                session=session,
                transport=self._transport,
                sender=self._settings.mail_from,
                max_attempts=self._settings.max_deliveries,
            )
        # Raised only after the commit, so the attempt is counted before the event comes back.
        if outcome is service.Outcome.RETRY:
            raise DeliveryDeferred(event.id, "the mail transport is unavailable")


def start_consumers(
    runtime: Runtime, settings: NotificationSettings, transport: MailTransport
) -> None:
    assert runtime.broker is not None, "the app is created with use_broker=True"
    handler = NotificationHandler(runtime, settings, transport)
    for consumer in CONSUMERS:
        runtime.spawn(
            consume(
                runtime.broker,
                stream=consumer.stream,
                durable=consumer.durable,
                subject=consumer.subject,
                handler=handler,
                max_deliver=settings.max_deliveries,
                ack_wait=settings.ack_wait_seconds,
            ),
            consumer.durable,
        )
