"""Events the payment service publishes (through its outbox)."""

from __future__ import annotations

from typing import Any

from shopkit.messaging import enqueue
from sqlalchemy.ext.asyncio import AsyncSession

from shop_payment.models import Charge, Refund, outbox

PAYMENT_DECLINED = "payment.declined"
PAYMENT_REFUNDED = "payment.refunded"


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


async def payment_declined(session: AsyncSession, charge: Charge) -> str:
    return await enqueue(
        session,
        outbox,
        PAYMENT_DECLINED,
        {
            "order_id": charge.order_id,
            "customer_id": charge.customer_id,
            "charge_id": charge.id,
            "decline_code": charge.decline_code,
            "amount": _money(charge.amount, charge.currency),
        },
    )


async def payment_refunded(session: AsyncSession, charge: Charge, refund: Refund) -> str:
    return await enqueue(
        session,
        outbox,
        PAYMENT_REFUNDED,
        {
            "order_id": charge.order_id,
            "customer_id": charge.customer_id,
            "charge_id": charge.id,
            "refund_id": refund.id,
            "amount": _money(refund.amount, charge.currency),
        },
    )
