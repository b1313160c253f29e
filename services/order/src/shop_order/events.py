"""Events the order service publishes (through its outbox), as internal-api.md defines them."""

from __future__ import annotations

from typing import Any

from shop_order.models import Order

ORDER_CONFIRMED = "order.confirmed"
ORDER_CANCELLED = "order.cancelled"


def _money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD"}


def order_confirmed(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "total": _money(order.total_amount),
        "items": [
            {
                "product_id": item.product_id,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": _money(item.unit_price),
            }
            for item in order.items
        ],
    }


def order_cancelled(order: Order, refunded: int) -> dict[str, Any]:
    return {"order_id": order.id, "customer_id": order.customer_id, "refunded": _money(refunded)}
