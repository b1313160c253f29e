"""Read side of the order service, and the one mapping from rows to the public shape.

The checkout and the cancellation live in :mod:`shop_order.saga`: they call other services
and so cannot run inside a request's single transaction.
"""

from __future__ import annotations

from datetime import datetime

from shopkit.schemas import Money, decode_cursor, encode_cursor, invalid_cursor
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

CURSOR_KEYS = {"created_at", "id"}


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


def _position(cursor: str) -> tuple[datetime, str]:
    position = decode_cursor(cursor, CURSOR_KEYS)
    created_at, order_id = position["created_at"], position["id"]
    if not isinstance(created_at, str) or not isinstance(order_id, str):
        raise invalid_cursor()
    try:
        when = datetime.fromisoformat(created_at)
    except ValueError as exc:
        raise invalid_cursor() from exc
    if when.tzinfo is None:
        raise invalid_cursor()
    return when, order_id


async def list_orders(
    *, customer_id: str, limit: int, cursor: str | None, session: AsyncSession
) -> OrderPage:
    before = _position(cursor) if cursor else None
    rows = await repository.page_for_customer(session, customer_id, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor({"created_at": last.created_at.isoformat(), "id": last.id})
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
