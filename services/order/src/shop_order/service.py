"""Read side of the order service, and the one mapping from rows to the public shape.

The checkout and the cancellation live in :mod:`shop_order.saga`: they call other services
and so cannot run inside a request's single transaction.
"""

from __future__ import annotations

from shopkit.schemas import Money, decode_time_cursor, encode_time_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from shop_order import repository
from shop_order.errors import OrderNotFound
from shop_order.models import Order
from shop_order.schemas import (
    OrderAuditPage,
    OrderAuditRead,
    OrderFailure,
    OrderItemRead,
    OrderPage,
    OrderRead,
    ShippingAddress,
)


def to_read(order: Order) -> OrderRead:
    failure = (
        OrderFailure(code=order.failure_code, detail=order.failure_detail)
        if order.failure_code
        else None
    )
    return OrderRead(
        id=order.id,
        status=order.status,
        items=[
            OrderItemRead(
                product_id=item.product_id,
                name=item.name,
                quantity=item.quantity,
                unit_price=Money(amount=item.unit_price),
            )
            for item in order.items
        ],
        total=Money(amount=order.total_amount),
        shipping_address=ShippingAddress.model_validate(order.shipping_address),
        failure=failure,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


async def get_order(order_id: str, *, customer_id: str, session: AsyncSession) -> OrderRead:
    order = await repository.get_for_customer(session, customer_id, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}")
    return to_read(order)


async def list_orders(
    *, customer_id: str, limit: int, cursor: str | None, session: AsyncSession
) -> OrderPage:
    before = decode_time_cursor(cursor) if cursor else None
    rows = await repository.page_for_customer(session, customer_id, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_time_cursor(last.created_at, last.id)
    return OrderPage(items=[to_read(o) for o in rows], next_cursor=next_cursor)


async def audit(*, session: AsyncSession) -> OrderAuditPage:
    return OrderAuditPage(
        items=[
            OrderAuditRead(
                id=o.id,
                customer_id=o.customer_id,
                status=o.status,
                saga_step=o.saga_step,
                total=Money(amount=o.total_amount),
                idempotency_key=o.idempotency_key,
            )
            for o in await repository.all_orders(session)
        ]
    )
