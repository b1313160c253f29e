"""Every query of the cart service."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from shopkit.db import add_unique
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shop_cart.models import Cart, CartLine


async def get_cart(session: AsyncSession, customer_id: str) -> Cart | None:
    return await session.get(Cart, customer_id)


class LineRow(NamedTuple):
    """A cart line as plain values, still usable after the read transaction has ended."""

    product_id: str
    quantity: int
    name: str
    unit_price: int


async def lines(session: AsyncSession, customer_id: str) -> list[LineRow]:
    result = await session.execute(
        select(CartLine.product_id, CartLine.quantity, CartLine.name, CartLine.unit_price)
        .where(CartLine.customer_id == customer_id)
        .order_by(CartLine.added_at, CartLine.product_id)
    )
    return [LineRow(*row) for row in result.all()]


async def end_read(session: AsyncSession) -> None:
    """End a transaction that only read, before a call to another service.

    On SQLite every transaction takes the write lock (BEGIN IMMEDIATE), so holding one across
    a catalog call would queue every cart request behind a slow product service. Nothing was
    written, so ending it here loses nothing; the next statement starts a fresh transaction.
    """
    await session.rollback()


async def count_lines(session: AsyncSession, customer_id: str) -> int:
    total = await session.scalar(
        select(func.count()).select_from(CartLine).where(CartLine.customer_id == customer_id)
    )
    return int(total or 0)


async def ensure_cart(session: AsyncSession, customer_id: str, now: datetime) -> None:
    """Create the customer's cart row at version 0 unless it exists."""
    if await session.get(Cart, customer_id) is not None:
        return
    # Two first writes of one customer may race on the primary key: the row is there either way.
    await add_unique(session, Cart(customer_id=customer_id, version=0, updated_at=now))


async def bump_version(session: AsyncSession, customer_id: str, now: datetime) -> None:
    """Count a change; the UPDATE also locks the cart row so one customer's writes queue."""
    await session.execute(
        update(Cart)
        .where(Cart.customer_id == customer_id)
        .values(version=Cart.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def bump_version_if(
    session: AsyncSession, customer_id: str, expected: int, now: datetime
) -> bool:
    """Compare-and-set on the version: True only when the cart still had ``expected``."""
    result = await session.execute(
        update(Cart)
        .where(Cart.customer_id == customer_id, Cart.version == expected)
        .values(version=Cart.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def get_line(session: AsyncSession, customer_id: str, product_id: str) -> CartLine | None:
    return await session.get(CartLine, (customer_id, product_id))


async def add_line(session: AsyncSession, line: CartLine) -> None:
    session.add(line)
    await session.flush()


async def delete_line(session: AsyncSession, customer_id: str, product_id: str) -> bool:
    result = await session.execute(
        delete(CartLine)
        .where(CartLine.customer_id == customer_id, CartLine.product_id == product_id)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def delete_lines(session: AsyncSession, customer_id: str) -> int:
    result = await session.execute(
        delete(CartLine)
        .where(CartLine.customer_id == customer_id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))
