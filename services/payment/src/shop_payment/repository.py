"""Every query of the payment service."""

from __future__ import annotations

from collections.abc import Sequence

from shopkit.db import add_unique
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shop_payment.models import Charge, Refund

SUCCEEDED = "succeeded"


async def charge_by_key(session: AsyncSession, key: str) -> Charge | None:
    result = await session.execute(select(Charge).where(Charge.idempotency_key == key))
    return result.scalar_one_or_none()


async def end_read(session: AsyncSession) -> None:
    """End a transaction that only read, before calling the payment provider.

    On SQLite every transaction takes the write lock (BEGIN IMMEDIATE); holding it across a
    provider call would stall every other payment request behind a slow processor. Nothing was
    written, so nothing is lost; the next statement starts a fresh transaction.
    """
    await session.rollback()


async def charge_by_id(
    session: AsyncSession, charge_id: str, *, lock: bool = False
) -> Charge | None:
    query = select(Charge).where(Charge.id == charge_id)
    if lock:
        # Serializes refunds of one charge on PostgreSQL so concurrent partial refunds cannot
        # together exceed it; SQLite already serializes writers.
        query = query.with_for_update()
    result = await session.execute(query)
    return result.scalar_one_or_none()


async def charges_for_order(session: AsyncSession, order_id: str) -> Sequence[Charge]:
    result = await session.execute(
        select(Charge).where(Charge.order_id == order_id).order_by(Charge.created_at, Charge.id)
    )
    return result.scalars().all()


async def refunded_totals(session: AsyncSession, charge_ids: Sequence[str]) -> dict[str, int]:
    if not charge_ids:
        return {}
    result = await session.execute(
        select(Refund.charge_id, func.sum(Refund.amount))
        .where(Refund.charge_id.in_(charge_ids))
        .group_by(Refund.charge_id)
    )
    return {charge_id: int(total or 0) for charge_id, total in result.all()}


async def insert_charge(session: AsyncSession, charge: Charge) -> bool:
    """Add a charge; False when another request inserted the same idempotency key first."""
    return await add_unique(session, charge)


async def refund_by_key(session: AsyncSession, key: str) -> Refund | None:
    result = await session.execute(select(Refund).where(Refund.idempotency_key == key))
    return result.scalar_one_or_none()


async def insert_refund(session: AsyncSession, refund: Refund) -> bool:
    """Add a refund; False when another request inserted the same idempotency key first."""
    return await add_unique(session, refund)


async def ledger_charges(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Per order: number and sum of succeeded charges."""
    result = await session.execute(
        select(Charge.order_id, func.count(Charge.id), func.sum(Charge.amount))
        .where(Charge.status == SUCCEEDED)
        .group_by(Charge.order_id)
    )
    return {order_id: (int(n), int(total or 0)) for order_id, n, total in result.all()}


async def ledger_refunds(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Per order: number and sum of refunds (of succeeded charges, the only refundable ones)."""
    result = await session.execute(
        select(Charge.order_id, func.count(Refund.id), func.sum(Refund.amount))
        .join(Charge, Refund.charge_id == Charge.id)
        .where(Charge.status == SUCCEEDED)
        .group_by(Charge.order_id)
    )
    return {order_id: (int(n), int(total or 0)) for order_id, n, total in result.all()}
