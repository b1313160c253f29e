"""The checkout saga, order cancellation, and the recovery loop that finishes both.

Unlike the rest of the platform these do not run in one request transaction: they call user,
cart, product and payment, and a transaction is never held open across a remote call. Each step
is persisted with its own short transaction *before* the next remote effect, so that a crash at
any point leaves an order whose ``saga_step`` says exactly what may have happened, and the
recovery loop can drive it to a terminal state. Every remote effect is idempotent (reservations
are keyed by order id, charges and refunds by keys derived from it), so redoing a step is safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shopkit.db import Database, utcnow
from shopkit.errors import DatabaseUnavailable, DomainError
from shopkit.http import PeerUnavailable
from shopkit.messaging import enqueue
from shopkit.metrics import (
    CHECKOUT_OUTCOMES,
    CHECKOUTS,
    ORDER_CURRENCIES,
    ORDER_REFUNDS,
    ORDER_REVENUE,
    prime,
)
from sqlalchemy.exc import IntegrityError

from shop_order import domain, events, repository
from shop_order.clients import CartClient, PaymentClient, ProductClient, UserClient
from shop_order.clients.payment import Charge, PaymentRefused, Refund
from shop_order.clients.product import ReserveRefused, TransitionRefused
from shop_order.domain import Admission, ChargeFinding, ChargeView, RecoveryAction, Status, Step
from shop_order.errors import (
    CancelIncomplete,
    CartEmpty,
    CheckoutAbandoned,
    CheckoutAborted,
    CustomerUnknown,
    IdempotencyKeyReused,
    InvalidPaymentToken,
    InventoryUnavailable,
    NotCancellable,
    OrderNotFound,
    PaymentRejected,
    PaymentUnavailable,
    RefundUnavailable,
    RequestInProgress,
)
from shop_order.models import Order, OrderItem, outbox
from shop_order.schemas import OrderCreate, OrderRead
from shop_order.service import to_read
from shop_order.settings import OrderSettings

log = logging.getLogger("shop_order.saga")

RETRY_AFTER_SECONDS = 2
StatusStep = tuple[Status, Step]


@dataclass(frozen=True)
class Answer:
    """What POST /orders answers: stored on the order once final, so a replay is identical."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str | None:
        """The problem type's last segment, for an error answer."""
        kind = self.body.get("type")
        return kind.rsplit("/", 1)[-1] if isinstance(kind, str) else None


def error_answer(error: DomainError) -> Answer:
    return Answer(error.status, error.to_body(), dict(error.headers))


def stored_answer(order: Order) -> Answer | None:
    if order.response_status is None or order.response_body is None:
        return None
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if order.response_status == 503 else {}
    return Answer(order.response_status, order.response_body, headers)


def in_progress(order_id: str) -> Answer:
    error = RequestInProgress(
        "the first request with this key has not finished; retry shortly",
        extra={"order_id": order_id},
    )
    return Answer(error.status, error.to_body(), {"Retry-After": "1"})


def accepted(order: Order) -> Answer:
    """Charged, and what is left is the recovery loop's: the order as far as it got."""
    return Answer(202, to_read(order).model_dump(mode="json"))


def charge_view(charge: Charge) -> ChargeView:
    return ChargeView(
        id=charge.id,
        status=charge.status,
        decline_code=charge.decline_code,
        amount=charge.amount.amount,
        refunded=charge.refunded.amount,
    )


class OrderSaga:
    def __init__(
        self,
        *,
        db: Database,
        settings: OrderSettings,
        users: UserClient,
        carts: CartClient,
        products: ProductClient,
        payments: PaymentClient,
    ) -> None:
        self._db = db
        self._settings = settings
        self._users = users
        self._carts = carts
        self._products = products
        self._payments = payments
        prime(CHECKOUTS, CHECKOUT_OUTCOMES)
        prime(ORDER_REVENUE, ORDER_CURRENCIES)
        prime(ORDER_REFUNDS, ORDER_CURRENCIES)

    # ------------------------------------------------------------------ persistence steps

    async def _move(
        self,
        order_id: str,
        expect: Iterable[StatusStep],
        to: StatusStep,
        *,
        items: list[OrderItem] | None = None,
        error: DomainError | None = None,
        unchanged_since: datetime | None = None,
        **values: Any,
    ) -> Order | None:
        """One step: in its own transaction, move the order from one of the ``expect`` states to
        ``to``. None when the order is no longer where this caller thinks (another request or
        the recovery loop moved it), which tells the caller to stop."""
        expected = set(expect)
        async with self._db.session() as session:
            order = await repository.lock(session, order_id)
            if order is None or (order.status, order.saga_step) not in expected:
                return None
            if unchanged_since is not None and order.updated_at != unchanged_since:
                return None
            if not domain.can_transition((order.status, order.saga_step), to):
                raise RuntimeError(f"illegal transition {order.saga_step} -> {to[1]}")
            if order.saga_step == Step.CHARGING.value:
                # The token is only needed for the request's own charge call (recovery never
                # charges): keep a payment credential no longer than that.
                order.payment_token = ""
            order.status, order.saga_step = to[0].value, to[1].value
            order.updated_at = utcnow()
            for name, value in values.items():
                setattr(order, name, value)
            if items is not None:
                order.items = items
            if error is not None:
                order.failure_code = error.slug
                order.failure_detail = error.detail or error.title
                order.response_status = error.status
                order.response_body = error.to_body()
            return order

    async def _fail(
        self, order_id: str, expect: Iterable[StatusStep], step: Step, error: DomainError
    ) -> Order | None:
        return await self._move(order_id, expect, (Status.FAILED, step), error=error)

    async def _confirm(self, order_id: str) -> Order | None:
        """Confirmation, its stored answer and the order.confirmed event in one transaction."""
        async with self._db.session() as session:
            order = await repository.lock(session, order_id)
            if order is None or (order.status, order.saga_step) != (
                Status.PENDING,
                Step.COMMITTED,
            ):
                return None
            order.status, order.saga_step = Status.CONFIRMED.value, Step.CONFIRMED.value
            order.updated_at = utcnow()
            order.response_status = 201
            order.response_body = to_read(order).model_dump(mode="json")
            await enqueue(session, outbox, events.ORDER_CONFIRMED, events.order_confirmed(order))
        # Counted once committed: only one caller moves an order to confirmed.
        ORDER_REVENUE.labels(order.currency).inc(order.total_amount)
        return order

    async def _mark_cancelled(self, order_id: str) -> Order | None:
        async with self._db.session() as session:
            order = await repository.lock(session, order_id)
            if order is None or (order.status, order.saga_step) != (
                Status.CONFIRMED,
                Step.CANCEL_REFUNDED,
            ):
                return None
            order.status, order.saga_step = Status.CANCELLED.value, Step.CANCELLED.value
            order.updated_at = utcnow()
            refunded = order.total_amount
            await enqueue(
                session, outbox, events.ORDER_CANCELLED, events.order_cancelled(order, refunded)
            )
        ORDER_REFUNDS.labels(order.currency).inc(refunded)
        return order

    async def _load(self, order_id: str) -> Order | None:
        # A read takes no write lock: the answer can still be read while another writer holds
        # the database (RELIABILITY.md R15), as it must once the money is taken.
        async with self._db.session(read_only=True) as session:
            return await repository.get(session, order_id)

    async def _settled(self, order_id: str) -> Answer:
        """The answer once someone else has moved the order: its stored one, or still busy."""
        order = await self._load(order_id)
        if order is None:
            return in_progress(order_id)
        return stored_answer(order) or in_progress(order_id)

    async def _answer(self, order: Order | None, order_id: str) -> Answer:
        if order is not None:
            answer = stored_answer(order)
            if answer is not None:
                return answer
        return await self._settled(order_id)

    # ------------------------------------------------------------------ checkout

    async def place_order(self, customer_id: str, key: str, body: OrderCreate) -> Answer:
        fingerprint = domain.request_fingerprint(body)
        try:
            admitted = await self._admit(customer_id, key, fingerprint, body)
            if isinstance(admitted, Answer):
                return admitted  # counted by _admit, which knows a replay from a refusal
            answer = await self._checkout(admitted, customer_id, body)
        except DomainError as exc:
            CHECKOUTS.labels(domain.checkout_outcome(exc.status, exc.slug)).inc()
            raise
        except Exception:
            CHECKOUTS.labels("error").inc()
            raise
        CHECKOUTS.labels(domain.checkout_outcome(answer.status, answer.slug)).inc()
        return answer

    async def _admit(
        self, customer_id: str, key: str, fingerprint: str, body: OrderCreate
    ) -> str | Answer:
        """Idempotency first: the order row is committed before any remote effect."""
        if self._payments.failing_fast():
            # Payment's breaker is open, so a new checkout would end in 503 anyway: answer that
            # before reserving anything (RELIABILITY.md R8). A replay still gets its answer.
            async with self._db.session(read_only=True) as session:
                existing = await repository.get_by_key(session, customer_id, key)
            if existing is None:
                CHECKOUTS.labels("unavailable").inc()
                return error_answer(
                    PaymentUnavailable(
                        "payment is failing; nothing was reserved or charged",
                        retry_after=RETRY_AFTER_SECONDS,
                    )
                )
            return self._readmit(existing, fingerprint)
        order_id = str(uuid.uuid4())
        try:
            async with self._db.session() as session:
                existing = await repository.get_by_key(session, customer_id, key)
                if existing is not None:
                    return self._readmit(existing, fingerprint)
                now = utcnow()
                repository.add(
                    session,
                    Order(
                        id=order_id,
                        customer_id=customer_id,
                        idempotency_key=key,
                        request_fingerprint=fingerprint,
                        status=Status.PENDING.value,
                        saga_step=Step.CREATED.value,
                        total_amount=0,
                        currency="USD",
                        shipping_address=body.shipping_address.model_dump(mode="json"),
                        payment_token=body.payment_token,
                        created_at=now,
                        updated_at=now,
                    ),
                )
                await session.flush()
        except IntegrityError:
            # A concurrent request with the same key inserted first.
            async with self._db.session() as session:
                existing = await repository.get_by_key(session, customer_id, key)
            if existing is None:
                CHECKOUTS.labels("replayed").inc()
                return in_progress(order_id)
            return self._readmit(existing, fingerprint)
        return order_id

    def _readmit(self, existing: Order, fingerprint: str) -> Answer:
        CHECKOUTS.labels("replayed").inc()
        decision = domain.admission(
            existing.request_fingerprint, existing.response_status is not None, fingerprint
        )
        if decision is Admission.MISMATCH:
            return error_answer(
                IdempotencyKeyReused(
                    "the key was first used with another body", extra={"order_id": existing.id}
                )
            )
        if decision is Admission.IN_PROGRESS:
            return in_progress(existing.id)
        answer = stored_answer(existing)
        assert answer is not None
        return answer

    async def _discard(self, order_id: str) -> None:
        """Forget an order that never got past its first step: nothing was done for it."""
        async with self._db.session() as session:
            await repository.delete_order(
                session, order_id, status=Status.PENDING, step=Step.CREATED
            )

    async def _checkout(self, order_id: str, customer_id: str, body: OrderCreate) -> Answer:
        try:
            user = await self._users.get_user(customer_id)
            cart = await self._carts.get_cart(customer_id) if user is not None else None
        except PeerUnavailable:
            await self._discard(order_id)
            raise
        if user is None or cart is None:
            error: DomainError = CustomerUnknown(
                "no account for this customer", extra={"order_id": order_id}
            )
            failed = await self._fail(
                order_id, [(Status.PENDING, Step.CREATED)], Step.REJECTED, error
            )
            return await self._answer(failed, order_id)
        if not cart.items:
            await self._discard(order_id)
            return error_answer(CartEmpty("add something to the cart before ordering"))

        lines = domain.merge_lines((line.product_id, line.quantity) for line in cart.items)
        moved = await self._move(
            order_id,
            [(Status.PENDING, Step.CREATED)],
            (Status.PENDING, Step.RESERVING),
            cart_version=cart.version,
        )
        if moved is None:
            return await self._settled(order_id)
        try:
            outcome = await self._products.reserve(order_id, lines)
        except PeerUnavailable as exc:
            log.warning("reservation of order %s: %s", order_id, exc.reason)
            error = InventoryUnavailable(
                "the stock could not be reserved",
                retry_after=RETRY_AFTER_SECONDS,
                extra={"order_id": order_id},
            )
            return await self._roll_back(order_id, Step.RESERVING, error)
        if isinstance(outcome, ReserveRefused):
            error, step = domain.reservation_refusal(
                outcome.reason, outcome.products, outcome.detail, order_id
            )
            if step is Step.RELEASING:
                return await self._fail_and_release(order_id, Step.RESERVING, error)
            failed = await self._fail(order_id, [(Status.PENDING, Step.RESERVING)], step, error)
            return await self._answer(failed, order_id)

        items = [
            OrderItem(
                order_id=order_id,
                position=index,
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=line.unit_price.amount,
                currency="USD",
            )
            for index, line in enumerate(outcome.items)
        ]
        total = domain.order_total(
            (line.quantity, line.unit_price.amount) for line in outcome.items
        )
        free = total == 0
        reserved = await self._move(
            order_id,
            [(Status.PENDING, Step.RESERVING)],
            (Status.PENDING, Step.RESERVED),
            items=items,
            total_amount=total,
        )
        if reserved is None:
            return await self._settled(order_id)
        if free:
            charged = await self._move(
                order_id, [(Status.PENDING, Step.RESERVED)], (Status.PENDING, Step.CHARGED)
            )
            if charged is None:
                return await self._settled(order_id)
            return await self._complete(order_id, charged)

        charging = await self._move(
            order_id, [(Status.PENDING, Step.RESERVED)], (Status.PENDING, Step.CHARGING)
        )
        if charging is None:
            return await self._settled(order_id)
        return await self._charge(charging, from_request=True)

    async def _charge(self, order: Order, *, from_request: bool) -> Answer:
        """Charge once (the key makes a retry or a replay the same charge), then act on what
        payment says; when it cannot say, ask it what happened before compensating."""
        result: Charge | PaymentRefused | None = None
        attempts = self._settings.charge_attempts if from_request else 0
        for attempt in range(attempts):
            try:
                result = await self._payments.charge(
                    idempotency_key=domain.charge_key(order.id),
                    order_id=order.id,
                    customer_id=order.customer_id,
                    amount=order.total_amount,
                    payment_token=order.payment_token,
                )
                break
            except PeerUnavailable as exc:
                log.warning("charge of order %s: %s", order.id, exc.reason)
                # A timeout already spent the budget of the request; an error answer or a
                # refused connection is cheap to retry, and the key makes it the same charge.
                if exc.reason == "timed out" or attempt + 1 >= attempts:
                    break
                base = self._settings.charge_retry_backoff_seconds
                await asyncio.sleep(base * (1 + random.random()))
        if isinstance(result, PaymentRefused):
            if result.slug == "invalid-payment-token":
                error: DomainError = InvalidPaymentToken(
                    "the payment token was refused", extra={"order_id": order.id}
                )
            else:
                error = PaymentRejected(
                    f"payment answered {result.status} {result.slug}".rstrip(),
                    extra={"order_id": order.id},
                )
            return await self._fail_and_release(order.id, Step.CHARGING, error)

        finding: ChargeFinding | None
        if isinstance(result, Charge):
            view = charge_view(result)
            finding = (
                ChargeFinding.SUCCEEDED if view.status == "succeeded" else ChargeFinding.DECLINED
            )
        else:
            try:
                charges = await self._payments.charges_for(order.id)
                finding, found = domain.classify_charges([charge_view(c) for c in charges])
                view = found if found is not None else ChargeView("", "", None, 0, 0)
            except PeerUnavailable:
                finding = None
                view = ChargeView("", "", None, 0, 0)

        if finding is ChargeFinding.SUCCEEDED:
            try:
                charged = await self._move(
                    order.id,
                    [(Status.PENDING, Step.CHARGING)],
                    (Status.PENDING, Step.CHARGED),
                    charge_id=view.id,
                )
            except DatabaseUnavailable:
                # The money is taken and the order stays at charging, which the recovery loop
                # resolves by asking payment: it will be confirmed. A 503 would tell the client
                # that nothing was charged.
                log.warning("order %s charged; recording it is left to recovery", order.id)
                return accepted(order)
            if charged is None:
                return await self._settled(order.id)
            return await self._complete(order.id, charged)
        if finding is ChargeFinding.DECLINED:
            return await self._fail_and_release(
                order.id, Step.CHARGING, domain.decline_error(view.decline_code, order.id)
            )
        # No charge seen, or payment cannot be asked. A request payment has not processed yet
        # could still land, so the order is failed as charge-unknown: the recovery loop keeps
        # looking for a late charge for a while and refunds it.
        error = (
            PaymentUnavailable(
                "payment could not be reached; nothing was charged",
                retry_after=RETRY_AFTER_SECONDS,
                extra={"order_id": order.id},
            )
            if from_request
            else CheckoutAbandoned(
                "the checkout did not finish in time", extra={"order_id": order.id}
            )
        )
        try:
            failed = await self._fail(
                order.id, [(Status.PENDING, Step.CHARGING)], Step.CHARGE_UNKNOWN, error
            )
        except DatabaseUnavailable:
            if not from_request:
                raise
            # A charge may have landed and the order stays at charging, which the recovery loop
            # resolves by asking payment: confirmed if it finds the charge, failed otherwise.
            # Either answer now could be wrong; pending is not.
            log.warning("order %s: charge unknown; recording it is left to recovery", order.id)
            return accepted(order)
        if failed is not None:
            await self._release_quietly(order.id, settle=False)
        return await self._answer(failed, order.id)

    async def _commit_reservation(self, order_id: str) -> bool | None:
        """True when committed, False when product refuses (released or expired), None when it
        cannot be reached after a few attempts."""
        delay = self._settings.commit_backoff_seconds
        for attempt in range(self._settings.commit_attempts):
            try:
                result = await self._products.commit(order_id)
            except PeerUnavailable as exc:
                log.warning("commit of order %s (attempt %d): %s", order_id, attempt + 1, exc)
                if attempt + 1 < self._settings.commit_attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            return not isinstance(result, TransitionRefused)
        return None

    async def _complete(self, order_id: str, charged: Order | None = None) -> Answer:
        """Charged: commit the reservation and confirm; or refund when the stock is gone.
        ``charged`` is the order as the request saw it once charged (None in recovery)."""
        committed = await self._commit_reservation(order_id)
        if committed is None:
            # The money was taken: the order stays pending and the recovery loop commits it.
            try:
                order = await self._load(order_id)
            except DatabaseUnavailable:
                if charged is None:
                    raise
                order = charged
            if order is None:
                return in_progress(order_id)
            return accepted(order)
        if not committed:
            error = CheckoutAborted(
                "the reserved stock was no longer held; the charge is refunded",
                extra={"order_id": order_id},
            )
            voiding = await self._fail(
                order_id, [(Status.PENDING, Step.CHARGED)], Step.VOIDING, error
            )
            if voiding is not None:
                try:
                    await self._void(voiding)
                except PeerUnavailable as exc:
                    log.warning("refund of aborted order %s deferred: %s", order_id, exc)
            return await self._answer(voiding, order_id)
        try:
            await self._move(
                order_id, [(Status.PENDING, Step.CHARGED)], (Status.PENDING, Step.COMMITTED)
            )
            confirmed = await self._confirm(order_id)
        except DatabaseUnavailable:
            # Charged and the stock committed: the recovery loop confirms it (commit again is a
            # no-op), so the client is told it is accepted, not that it failed.
            if charged is None:
                raise
            log.warning("order %s committed; confirming it is left to recovery", order_id)
            return accepted(charged)
        if confirmed is not None:
            await self._clear_cart(confirmed)
        return await self._answer(confirmed, order_id)

    async def _clear_cart(self, order: Order) -> None:
        if order.cart_version is None:
            return
        try:
            await self._carts.clear(order.customer_id, order.cart_version)
        except PeerUnavailable as exc:
            # The order stands either way; a cart left full is an annoyance, not an error.
            log.warning("cart of order %s not cleared: %s", order.id, exc)

    async def _roll_back(self, order_id: str, step: Step, error: DomainError) -> Answer:
        """Nothing was charged: release whatever may be reserved, then fail the order. While
        product cannot be reached the order stays pending for the recovery loop."""
        try:
            released = await self._products.release(order_id)
        except PeerUnavailable as exc:
            log.warning("release of order %s deferred: %s", order_id, exc)
            return error_answer(error)
        if isinstance(released, TransitionRefused):
            log.error("release of order %s refused: %s", order_id, released.slug)
        failed = await self._fail(order_id, [(Status.PENDING, step)], Step.RELEASED, error)
        return await self._answer(failed, order_id)

    async def _fail_and_release(self, order_id: str, step: Step, error: DomainError) -> Answer:
        failed = await self._fail(order_id, [(Status.PENDING, step)], Step.RELEASING, error)
        if failed is not None:
            await self._release_quietly(order_id, settle=True)
        return await self._answer(failed, order_id)

    async def _release_quietly(self, order_id: str, *, settle: bool) -> None:
        try:
            await self._release(order_id, settle=settle)
        except PeerUnavailable as exc:
            log.warning("release of order %s deferred: %s", order_id, exc)

    async def _release(self, order_id: str, *, settle: bool) -> None:
        released = await self._products.release(order_id)
        if isinstance(released, TransitionRefused):
            log.error("release of order %s refused: %s", order_id, released.slug)
        if settle:
            await self._move(
                order_id, [(Status.FAILED, Step.RELEASING)], (Status.FAILED, Step.RELEASED)
            )

    async def _void(self, order: Order) -> None:
        """Refund whatever was charged for an order that will not be fulfilled."""
        charges = [charge_view(c) for c in await self._payments.charges_for(order.id)]
        for charge in charges:
            if charge.refundable > 0:
                result = await self._payments.refund(
                    idempotency_key=domain.void_key(order.id),
                    charge_id=charge.id,
                    amount=charge.refundable,
                )
                if isinstance(result, PaymentRefused):
                    raise PeerUnavailable("payment", f"refused the void refund: {result.slug}")
        await self._move(order.id, [(Status.FAILED, Step.VOIDING)], (Status.FAILED, Step.VOIDED))

    # ------------------------------------------------------------------ cancellation

    async def cancel(self, customer_id: str, order_id: str) -> OrderRead:
        async with self._db.session() as session:
            order = await repository.get_for_customer(session, customer_id, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        if not domain.cancellable(order.status):
            raise NotCancellable(
                f"the order is {order.status}",
                extra={"order_id": order.id, "order_status": order.status},
            )
        if order.saga_step != Step.CANCEL_REFUNDED:
            cancelling = await self._move(
                order_id,
                [(Status.CONFIRMED, Step.CONFIRMED), (Status.CONFIRMED, Step.CANCELLING)],
                (Status.CONFIRMED, Step.CANCELLING),
            )
            if cancelling is None:
                return await self._cancel_outcome(order_id)
            await self._refund_for_cancel(cancelling)
        return await self._finish_cancel(order_id)

    async def _refund_for_cancel(self, order: Order) -> None:
        if order.charge_id is not None and order.total_amount > 0:
            result: Refund | PaymentRefused | None = None
            try:
                result = await self._payments.refund(
                    idempotency_key=domain.refund_key(order.id),
                    charge_id=order.charge_id,
                    amount=order.total_amount,
                )
            except PeerUnavailable as exc:
                log.warning("refund of order %s: %s; asking what happened", order.id, exc.reason)
            if not isinstance(result, Refund) and not await self._fully_refunded(order):
                raise RefundUnavailable(
                    "the refund could not be made; the order is still confirmed",
                    retry_after=RETRY_AFTER_SECONDS,
                    extra={"order_id": order.id},
                )
        await self._move(
            order.id,
            [(Status.CONFIRMED, Step.CANCELLING)],
            (Status.CONFIRMED, Step.CANCEL_REFUNDED),
        )

    async def _fully_refunded(self, order: Order) -> bool:
        try:
            charges = await self._payments.charges_for(order.id)
        except PeerUnavailable:
            return False
        return any(c.id == order.charge_id and charge_view(c).refundable == 0 for c in charges)

    async def _finish_cancel(self, order_id: str) -> OrderRead:
        try:
            restocked = await self._products.restock(order_id)
        except PeerUnavailable as exc:
            raise CancelIncomplete(
                "the refund was made; the stock is returned and the order cancelled shortly",
                retry_after=RETRY_AFTER_SECONDS,
                extra={"order_id": order_id},
            ) from exc
        if isinstance(restocked, TransitionRefused):
            log.error("restock of order %s refused: %s", order_id, restocked.slug)
        cancelled = await self._mark_cancelled(order_id)
        if cancelled is not None:
            return to_read(cancelled)
        return await self._cancel_outcome(order_id)

    async def _cancel_outcome(self, order_id: str) -> OrderRead:
        """Another cancel of the same order got there first."""
        order = await self._load(order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        if order.status == Status.CANCELLED:
            return to_read(order)
        raise NotCancellable(
            "a cancellation of this order is in progress",
            extra={"order_id": order.id, "order_status": order.status},
        )

    # ------------------------------------------------------------------ recovery

    async def run_recovery(self) -> None:
        while True:
            try:
                await self.recover_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("recovery pass failed: %s", exc)
            await asyncio.sleep(self._settings.recovery_interval_seconds)

    async def recover_once(self) -> int:
        """One pass over unfinished orders; returns how many were acted on."""
        now = utcnow()
        async with self._db.session() as session:
            candidates = await repository.recovery_candidates(
                session,
                wanted={
                    str(s): frozenset(str(p) for p in steps)
                    for s, steps in domain.RECOVERABLE.items()
                },
                stale_before=now - timedelta(seconds=self._settings.saga_timeout_seconds),
                stale_only=frozenset(str(s) for s in domain.STALE_ONLY_STATUSES),
                limit=self._settings.recovery_batch,
            )
        acted = 0
        for order in candidates:
            stale = domain.is_stale(order.updated_at, now, self._settings.saga_timeout_seconds)
            action = domain.recovery_action(order.status, order.saga_step, stale=stale)
            if action is RecoveryAction.NONE:
                continue
            try:
                if await self._recover(order, action):
                    acted += 1
            except PeerUnavailable as exc:
                log.info("recovery of order %s (%s) waits: %s", order.id, action, exc)
            except DomainError as exc:
                log.warning("recovery of order %s (%s): %s", order.id, action, exc)
        return acted

    async def _recover(self, order: Order, action: RecoveryAction) -> bool:
        log.info(
            "recovering order %s at %s/%s: %s", order.id, order.status, order.saga_step, action
        )
        if action is RecoveryAction.DISCARD:
            await self._discard(order.id)
        elif action is RecoveryAction.ROLL_BACK:
            await self._products.release(order.id)
            error = CheckoutAbandoned(
                "the checkout did not finish in time", extra={"order_id": order.id}
            )
            await self._fail(
                order.id, [(Status.PENDING, Step(order.saga_step))], Step.RELEASED, error
            )
        elif action is RecoveryAction.RESOLVE_CHARGE:
            await self._charge(order, from_request=False)
        elif action is RecoveryAction.COMPLETE:
            await self._complete(order.id)
        elif action is RecoveryAction.CONFIRM:
            confirmed = await self._confirm(order.id)
            if confirmed is not None:
                await self._clear_cart(confirmed)
        elif action is RecoveryAction.RELEASE:
            await self._release(order.id, settle=True)
        elif action is RecoveryAction.SETTLE_CHARGE:
            await self._settle_charge(order)
        elif action is RecoveryAction.VOID:
            await self._void(order)
        elif action is RecoveryAction.RESOLVE_CANCEL:
            await self._resolve_cancel(order)
        elif action is RecoveryAction.FINISH_CANCEL:
            await self._finish_cancel(order.id)
        return True

    async def _settle_charge(self, order: Order) -> None:
        await self._products.release(order.id)
        charges = [charge_view(c) for c in await self._payments.charges_for(order.id)]
        for charge in charges:
            if charge.refundable > 0:
                result = await self._payments.refund(
                    idempotency_key=domain.void_key(order.id),
                    charge_id=charge.id,
                    amount=charge.refundable,
                )
                if isinstance(result, PaymentRefused):
                    log.error("void refund of order %s refused: %s", order.id, result.slug)
                    return
                log.info("refunded a late charge %s of failed order %s", charge.id, order.id)
                return  # settled on a later pass, once payment shows the refund
        if domain.charge_settled(
            answered=True,
            refundable=sum(c.refundable for c in charges),
            updated_at=order.updated_at,
            now=utcnow(),
            settle_seconds=self._settings.charge_settle_seconds,
        ):
            await self._move(
                order.id,
                [(Status.FAILED, Step.CHARGE_UNKNOWN)],
                (Status.FAILED, Step.COMPENSATED),
            )

    async def _resolve_cancel(self, order: Order) -> None:
        """A cancel whose request gave up: finish it if the refund happened, else back out."""
        charges = await self._payments.charges_for(order.id)
        refunded = any(
            c.id == order.charge_id and charge_view(c).refundable == 0 for c in charges
        ) or (order.charge_id is None)
        if refunded:
            moved = await self._move(
                order.id,
                [(Status.CONFIRMED, Step.CANCELLING)],
                (Status.CONFIRMED, Step.CANCEL_REFUNDED),
            )
            if moved is not None:
                await self._finish_cancel(order.id)
            return
        await self._move(
            order.id,
            [(Status.CONFIRMED, Step.CANCELLING)],
            (Status.CONFIRMED, Step.CONFIRMED),
            unchanged_since=order.updated_at,
        )
