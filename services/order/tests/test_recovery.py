"""The recovery loop finishing sagas whose request died mid-way (the order service was killed).

Each test does, through the real peers, exactly the remote effects the saga had done before the
crash, writes the order row as the saga had persisted it, and lets the loop drive it home.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shop_order.domain import request_fingerprint
from shop_order.models import Order, OrderItem
from shop_order.schemas import OrderCreate
from shopkit.db import utcnow
from shopkit.testing import eventually

if TYPE_CHECKING:
    from conftest import Customer, OrderApi, OrderFactory, Platform

RECOVERY = {
    "saga_timeout_seconds": 1.0,
    "recovery_interval_seconds": 0.05,
    "charge_settle_seconds": 0.0,
}


async def crashed_order(
    orders: OrderApi,
    customer: Customer,
    *,
    status: str,
    step: str,
    reservation: dict[str, Any] | None = None,
    charge_id: str | None = None,
    cart_version: int | None = None,
    key: str = "crashed",
) -> str:
    order_id = str(uuid.uuid4()) if reservation is None else reservation["order_id"]
    lines = reservation["items"] if reservation else []
    then = utcnow() - timedelta(seconds=60)
    async with orders.db.session() as session:
        session.add(
            Order(
                id=order_id,
                customer_id=customer.id,
                idempotency_key=key,
                request_fingerprint=request_fingerprint(OrderCreate.model_validate(orders.body())),
                status=status,
                saga_step=step,
                total_amount=sum(i["quantity"] * i["unit_price"]["amount"] for i in lines),
                currency="USD",
                shipping_address=orders.body()["shipping_address"],
                payment_token="tok_visa",
                charge_id=charge_id,
                cart_version=cart_version,
                created_at=then,
                updated_at=then,
                items=[
                    OrderItem(
                        order_id=order_id,
                        position=n,
                        product_id=i["product_id"],
                        name=i["name"],
                        quantity=i["quantity"],
                        unit_price=i["unit_price"]["amount"],
                        currency="USD",
                    )
                    for n, i in enumerate(lines)
                ],
            )
        )
    return order_id


async def settled(orders: OrderApi, order_id: str, status: str, step: str) -> bool:
    async def check() -> bool:
        row = await orders.row(order_id)
        return (row.status, row.saga_step) == (status, step)

    result: bool = await eventually(check, timeout=10)
    return result


async def test_charged_but_unconfirmed_order_is_confirmed(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=600, stock=10)
    await platform.put_in_cart(customer, product, 2)
    cart_version = (
        await platform.http.get(
            f"{platform.cart_url}/internal/carts/{customer.id}", headers=platform.internal
        )
    ).json()["version"]
    order_id = str(uuid.uuid4())
    reservation = await platform.reserve(order_id, [(product, 2)])
    # crash after the charge reached payment, before the saga heard back
    await platform.charge(order_id, customer.id, 1200)

    async with order_app(**RECOVERY) as orders:
        await crashed_order(
            orders,
            customer,
            status="pending",
            step="charging",
            reservation=reservation,
            cart_version=cart_version,
        )
        assert await settled(orders, order_id, "confirmed", "confirmed")

        row = await orders.row(order_id)
        assert row.charge_id
        assert row.response_status == 201
        events = await orders.outbox_rows()
        assert [e["subject"] for e in events] == ["order.confirmed"]
        assert json.loads(events[0]["payload"])["data"]["order_id"] == order_id
        # the client's retry of the lost request now gets the confirmed order
        replay = await orders.place(customer, "crashed")
        assert replay.status_code == 201
        assert replay.json()["id"] == order_id
        assert replay.json()["status"] == "confirmed"
    reservation_now = await platform.reservation(order_id)
    assert reservation_now is not None
    assert reservation_now["status"] == "committed"
    assert await platform.available(product) == 8
    ledger = await platform.ledger()
    assert ledger["orders"][order_id] == {
        "charges": 1,
        "charged": 1200,
        "refunds": 0,
        "refunded": 0,
    }
    assert await platform.cart_lines(customer) == {}


async def test_reserved_never_charged_order_is_released_and_failed(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=600, stock=10)
    order_id = str(uuid.uuid4())
    reservation = await platform.reserve(order_id, [(product, 4)])
    assert await platform.available(product) == 6

    async with order_app(**RECOVERY) as orders:
        await crashed_order(
            orders, customer, status="pending", step="reserved", reservation=reservation
        )
        assert await settled(orders, order_id, "failed", "released")

        replay = await orders.place(customer, "crashed")
        assert replay.status_code == 503
        assert replay.json()["type"].endswith("checkout-abandoned")
        assert replay.json()["order_id"] == order_id
        assert await orders.outbox_rows() == []
    assert await platform.available(product) == 10
    assert await platform.charges(order_id) == []


async def test_charging_order_without_a_charge_is_failed_and_released(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=250, stock=3)
    order_id = str(uuid.uuid4())
    reservation = await platform.reserve(order_id, [(product, 3)])

    async with order_app(**RECOVERY) as orders:
        await crashed_order(
            orders, customer, status="pending", step="charging", reservation=reservation
        )
        # failed at once, then closed once payment confirms no charge is left to refund
        assert await settled(orders, order_id, "failed", "compensated")
    assert await platform.available(product) == 3
    assert (await platform.reservation(order_id) or {}).get("status") == "released"
    assert (await platform.ledger())["charged"] == 0


async def test_late_charge_of_a_failed_order_is_refunded(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=800, stock=5)
    order_id = str(uuid.uuid4())
    reservation = await platform.reserve(order_id, [(product, 1)])

    async with order_app(**RECOVERY) as orders:
        await crashed_order(
            orders, customer, status="failed", step="charge-unknown", reservation=reservation
        )
        # payment processes the charge request after the saga gave up on it
        await platform.charge(order_id, customer.id, 800)
        assert await settled(orders, order_id, "failed", "compensated")
    ledger = await platform.ledger()
    assert ledger["orders"][order_id] == {
        "charges": 1,
        "charged": 800,
        "refunds": 1,
        "refunded": 800,
    }
    assert await platform.available(product) == 5


async def test_order_that_never_started_is_forgotten(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    async with order_app(**RECOVERY) as orders:
        order_id = await crashed_order(orders, customer, status="pending", step="created")

        async def gone() -> bool:
            return not any(r.id == order_id for r in await orders.rows())

        assert await eventually(gone, timeout=10)


async def test_refunded_cancellation_is_finished(
    platform: Platform, orders: OrderApi, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=300, stock=10)
    await platform.put_in_cart(customer, product, 2)
    placed = await orders.place(customer)
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    row = await orders.row(order_id)
    assert row.charge_id is not None
    # crash after the refund, before restocking: the step says so
    refund = await platform.http.post(
        f"{platform.payment_url}/internal/refunds",
        headers=platform.internal,
        json={
            "idempotency_key": f"order-{order_id}-refund",
            "charge_id": row.charge_id,
            "amount": {"amount": 600, "currency": "USD"},
        },
    )
    assert refund.status_code == 201, refund.text
    async with orders.db.session() as session:
        stuck = await session.get(Order, order_id)
        assert stuck is not None
        stuck.saga_step = "cancel-refunded"
        stuck.updated_at = utcnow() - timedelta(seconds=60)

    async with order_app(**RECOVERY) as recovering:
        assert await settled(recovering, order_id, "cancelled", "cancelled")
        subjects = [e["subject"] for e in await recovering.outbox_rows()]
        assert subjects.count("order.cancelled") == 1
    assert await platform.available(product) == 10
    ledger = await platform.ledger()
    assert ledger["orders"][order_id]["refunds"] == 1
    assert ledger["orders"][order_id]["refunded"] == 600


async def test_no_order_stays_pending_once_peers_are_back(
    platform: Platform, order_app: OrderFactory
) -> None:
    customer = await platform.customer()
    product = await platform.product(price=100, stock=10)
    await platform.put_in_cart(customer, product, 1)
    # the checkout meets a dead inventory service and leaves a pending order behind
    async with order_app(product_url="http://127.0.0.1:9") as broken:
        resp = await broken.place(customer)
        assert resp.status_code == 503
        [row] = await broken.rows()
        assert row.status == "pending"
    async with order_app(**RECOVERY) as orders:
        assert await settled(orders, row.id, "failed", "released")
    assert await platform.available(product) == 10
