"""The event side of the service: durable JetStream consumers feeding one handler.

The handler is to events what a route is to requests: it owns the transactions and calls the
service. Raising makes the kit's consumer nak the message, so JetStream redelivers it with
backoff; returning acks it, once the kit has recorded the event as handled in the inbox. An
event the inbox says was handled is acked without calling the handler, and the notification row
(unique per event id) with its send claim keeps the one email per event should two deliveries
still meet: the inbox row is settled after the handler's last transaction, so a crash between
the two only brings the event back to a handler that finds its notification settled.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from shopkit.app import Runtime
from shopkit.messaging import Event, consume, watch_dead_letters

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
            pending = row if row is not None and row.status in ("queued", "sending") else None
        if pending is None:
            return
        attempt = _Attempt()
        try:
            await self._send(event, pending.id, pending.customer_id, attempt)
        except Exception as exc:
            if not event.last_delivery:
                raise
            # JetStream will not deliver this event again: settle the row here (and ack), or it
            # would wait 'queued' forever. Each step above is its own short transaction, so this
            # one does not wait on any of them.
            async with db.session() as session:
                if attempt.handed_over:
                    await service.record_sent(pending.id, session=session)
                    return
                reason = f"not sent by the last delivery ({event.delivery}): {_describe(exc)}"
                log.error("notification %s failed: %s", pending.id, reason)
                await service.mark_failed(pending.id, reason=reason, session=session)

    async def _send(
        self, event: Event, notification_id: str, customer_id: str, attempt: _Attempt
    ) -> None:
        db = self._runtime.db
        # PeerUnavailable propagates: the event comes back once the user service may be up.
        user = await self._runtime.client(UserClient).get_user(customer_id)
        if user is None:
            log.error("no account %s for notification %s", customer_id, notification_id)
            async with db.session() as session:
                await service.mark_failed(
                    notification_id, reason="no such customer account", session=session
                )
            return
        async with db.session() as session:
            claim = await service.claim(
                notification_id,
                recipient=user.email,
                claim_timeout=self._settings.claim_timeout_seconds,
                session=session,
            )
        if claim is service.Outcome.BUSY:
            # Another delivery of the event (or a replica) is sending it; come back to see how
            # that went, and to take over should its sender have died.
            raise DeliveryDeferred(event.id, "another delivery is sending it")
        if not isinstance(claim, service.Claim):
            return
        if self._settings.fault_handler_delay_seconds:
            await asyncio.sleep(self._settings.fault_handler_delay_seconds)
        # No transaction is open while the relay is talked to: the claim alone keeps other
        # deliveries from sending it meanwhile.
        error = await service.send_claimed(
            claim, transport=self._transport, sender=self._settings.mail_from
        )
        attempt.handed_over = error is None
        async with db.session() as session:
            outcome = await service.finish_send(
                claim,
                error,
                max_attempts=self._settings.max_deliveries,
                last_delivery=event.last_delivery,
                session=session,
            )
        # Raised only after the commit, so the attempt is counted before the event comes back.
        if outcome is service.Outcome.RETRY:
            raise DeliveryDeferred(event.id, "the mail transport is unavailable")


class _Attempt:
    """What one delivery got done, for settling the row when it ends in an error."""

    handed_over = False


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def start_consumers(
    runtime: Runtime, settings: NotificationSettings, transport: MailTransport
) -> None:
    assert runtime.broker is not None, "the app is created with use_broker=True"
    assert runtime.inbox is not None, "the app is created with its inbox table"
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
                inbox=runtime.inbox,
                concurrency=settings.consumer_concurrency,
            ),
            consumer.durable,
        )
    runtime.spawn(
        watch_dead_letters(runtime.broker, [consumer.durable for consumer in CONSUMERS]),
        "dead-letter-depth",
    )
