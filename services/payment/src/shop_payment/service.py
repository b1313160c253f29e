"""Charges and refunds: idempotent by key, every attempt recorded, events through the outbox.

Functions take the request's session and never commit; the route's session commits once, so a
charge row and its event land together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel
from shopkit.db import utcnow
from shopkit.metrics import PAYMENT_DECLINES
from shopkit.schemas import Money
from sqlalchemy.ext.asyncio import AsyncSession

from shop_payment import events, repository
from shop_payment.errors import (
    ChargeNotFound,
    ChargeNotRefundable,
    IdempotencyKeyReused,
    RefundExceedsCharge,
)
from shop_payment.models import Charge, Refund
from shop_payment.provider import PaymentProvider
from shop_payment.schemas import (
    ChargeCreate,
    ChargeRead,
    LedgerRead,
    OrderLedger,
    RefundCreate,
    RefundRead,
)


@dataclass(frozen=True)
class Outcome:
    """What a create call produced; ``replayed`` tells the route to answer 200 instead of 201."""

    replayed: bool


@dataclass(frozen=True)
class ChargeResult(Outcome):
    charge: ChargeRead


@dataclass(frozen=True)
class RefundResult(Outcome):
    refund: RefundRead


def fingerprint(body: BaseModel) -> str:
    """sha256 of the canonical JSON of a parsed body: key order and spacing do not matter."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create_charge(
    body: ChargeCreate, *, session: AsyncSession, provider: PaymentProvider
) -> ChargeResult:
    digest = fingerprint(body)
    existing = await repository.charge_by_key(session, body.idempotency_key)
    if existing is not None:
        return await _replay_charge(existing, digest, session=session)
    # Racing first requests with one key may both reach the provider; it gets the same
    # idempotency key from each (so a real processor charges once) and only one row wins below.
    await repository.end_read(session)
    outcome = await provider.charge(
        body.payment_token, body.amount, idempotency_key=body.idempotency_key
    )
    charge = Charge(
        id=str(uuid.uuid4()),
        idempotency_key=body.idempotency_key,
        request_fingerprint=digest,
        order_id=body.order_id,
        customer_id=body.customer_id,
        amount=body.amount.amount,
        currency=body.amount.currency,
        status=outcome.status,
        decline_code=outcome.decline_code,
        provider_ref=outcome.provider_ref,
        created_at=utcnow(),
    )
    if not await repository.insert_charge(session, charge):
        winner = await repository.charge_by_key(session, body.idempotency_key)
        assert winner is not None, "the unique key conflicted, so the row exists"
        return await _replay_charge(winner, digest, session=session)
    if charge.status == "declined":
        await events.payment_declined(session, charge)
        PAYMENT_DECLINES.labels(charge.decline_code or "card-declined").inc()
    return ChargeResult(replayed=False, charge=_charge_read(charge, refunded=0))


async def _replay_charge(charge: Charge, digest: str, *, session: AsyncSession) -> ChargeResult:
    if charge.request_fingerprint != digest:
        raise IdempotencyKeyReused("this idempotency key was used for a different charge")
    totals = await repository.refunded_totals(session, [charge.id])
    return ChargeResult(replayed=True, charge=_charge_read(charge, totals.get(charge.id, 0)))


async def charges_for_order(order_id: str, *, session: AsyncSession) -> list[ChargeRead]:
    charges: Sequence[Charge] = await repository.charges_for_order(session, order_id)
    totals = await repository.refunded_totals(session, [c.id for c in charges])
    return [_charge_read(c, totals.get(c.id, 0)) for c in charges]


async def create_refund(
    body: RefundCreate, *, session: AsyncSession, provider: PaymentProvider
) -> RefundResult:
    digest = fingerprint(body)
    existing = await repository.refund_by_key(session, body.idempotency_key)
    if existing is not None:
        return await _replay_refund(existing, digest, session=session)
    charge = await repository.charge_by_id(session, body.charge_id, lock=True)
    if charge is None:
        raise ChargeNotFound(f"no charge {body.charge_id!r}")
    # A racing first request with the same key may have refunded while we waited for the lock
    # (PostgreSQL, READ COMMITTED): look again under the lock, so it replays instead of a 409.
    existing = await repository.refund_by_key(session, body.idempotency_key)
    if existing is not None:
        return await _replay_refund(existing, digest, session=session)
    if charge.status != "succeeded":
        raise ChargeNotRefundable(f"charge {charge.id} is {charge.status}")
    already = (await repository.refunded_totals(session, [charge.id])).get(charge.id, 0)
    if already + body.amount.amount > charge.amount:
        raise RefundExceedsCharge(
            f"charge {charge.id} has {charge.amount - already} left to refund",
            extra={"refundable": {"amount": charge.amount - already, "currency": charge.currency}},
        )
    provider_ref = await provider.refund(charge.provider_ref, body.amount)
    refund = Refund(
        id=str(uuid.uuid4()),
        idempotency_key=body.idempotency_key,
        request_fingerprint=digest,
        charge_id=charge.id,
        amount=body.amount.amount,
        provider_ref=provider_ref,
        created_at=utcnow(),
    )
    if not await repository.insert_refund(session, refund):
        winner = await repository.refund_by_key(session, body.idempotency_key)
        assert winner is not None, "the unique key conflicted, so the row exists"
        return await _replay_refund(winner, digest, session=session)
    await events.payment_refunded(session, charge, refund)
    return RefundResult(replayed=False, refund=_refund_read(refund, charge))


async def _replay_refund(refund: Refund, digest: str, *, session: AsyncSession) -> RefundResult:
    if refund.request_fingerprint != digest:
        raise IdempotencyKeyReused("this idempotency key was used for a different refund")
    charge = await repository.charge_by_id(session, refund.charge_id)
    assert charge is not None, "refunds reference their charge by foreign key"
    return RefundResult(replayed=True, refund=_refund_read(refund, charge))


async def ledger(*, session: AsyncSession) -> LedgerRead:
    charged = await repository.ledger_charges(session)
    refunded = await repository.ledger_refunds(session)
    orders = {
        order_id: OrderLedger(
            charges=n,
            charged=total,
            refunds=refunded.get(order_id, (0, 0))[0],
            refunded=refunded.get(order_id, (0, 0))[1],
        )
        for order_id, (n, total) in charged.items()
    }
    return LedgerRead(
        charged=sum(total for _, total in charged.values()),
        refunded=sum(total for _, total in refunded.values()),
        orders=orders,
    )


def _charge_read(charge: Charge, refunded: int) -> ChargeRead:
    return ChargeRead.model_validate(
        {
            "id": charge.id,
            "order_id": charge.order_id,
            "customer_id": charge.customer_id,
            "status": charge.status,
            "decline_code": charge.decline_code,
            "amount": Money(amount=charge.amount, currency="USD"),
            "refunded": Money(amount=refunded, currency="USD"),
            "created_at": charge.created_at,
        }
    )


def _refund_read(refund: Refund, charge: Charge) -> RefundRead:
    return RefundRead(
        id=refund.id,
        charge_id=charge.id,
        order_id=charge.order_id,
        amount=Money(amount=refund.amount, currency="USD"),
        created_at=refund.created_at,
    )
