"""Every query of the order service."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shopkit.db import newest_first
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shop_order.models import Order, OrderItem


async def get_by_key(session: AsyncSession, customer_id: str, key: str) -> Order | None:
    stmt = select(Order).where(Order.customer_id == customer_id, Order.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, order_id: str) -> Order | None:
    return await session.get(Order, order_id)


async def get_for_customer(session: AsyncSession, customer_id: str, order_id: str) -> Order | None:
    stmt = select(Order).where(Order.id == order_id, Order.customer_id == customer_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock(session: AsyncSession, order_id: str) -> Order | None:
    """The order, locked for the rest of the transaction so a state change is check-then-set
    atomically (SQLite already serializes writers with BEGIN IMMEDIATE; PostgreSQL needs the row
    lock)."""
    stmt = select(Order).where(Order.id == order_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


def add(session: AsyncSession, order: Order) -> None:
    session.add(order)


def add_items(session: AsyncSession, items: Iterable[OrderItem]) -> None:
    session.add_all(list(items))


async def delete_order(session: AsyncSession, order_id: str, *, status: str, step: str) -> bool:
    stmt = delete(Order).where(
        Order.id == order_id, Order.status == status, Order.saga_step == step
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def page_for_customer(
    session: AsyncSession,
    customer_id: str,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[Order]:
    """Newest first; keyset on (created_at, id) so pages stay stable while orders are added."""
    stmt = newest_first(
        select(Order).where(Order.customer_id == customer_id),
        Order.created_at,
        Order.id,
        after=before,
        limit=limit,
    )
    return list((await session.execute(stmt)).scalars())


async def recovery_candidates(
    session: AsyncSession,
    *,
    wanted: dict[str, frozenset[str]],
    stale_before: datetime,
    stale_only: frozenset[str],
    limit: int,
) -> list[Order]:
    """Orders the recovery loop may have work for, oldest change first."""
    clauses = []
    for status, steps in wanted.items():
        clause = and_(Order.status == status, Order.saga_step.in_(sorted(steps)))
        if status in stale_only:
            clause = and_(clause, Order.updated_at < stale_before)
        clauses.append(clause)
    stmt = select(Order).where(or_(*clauses)).order_by(Order.updated_at).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def all_orders(session: AsyncSession) -> list[Order]:
    stmt = select(Order).order_by(Order.created_at, Order.id)
    return list((await session.execute(stmt)).scalars())
