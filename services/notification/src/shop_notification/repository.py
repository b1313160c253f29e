"""Every query of the notification service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shop_notification.models import Notification


async def get_by_event_id(session: AsyncSession, event_id: str) -> Notification | None:
    result = await session.execute(select(Notification).where(Notification.event_id == event_id))
    return result.scalar_one_or_none()


async def insert_if_absent(session: AsyncSession, notification: Notification) -> Notification:
    """The row for ``notification.event_id``: the given one if new, else the one already there.

    Two deliveries of the same event racing (replicas on PostgreSQL) both pass the lookup; the
    unique event id stops the second insert, and its savepoint keeps the transaction usable.
    """
    existing = await get_by_event_id(session, notification.event_id)
    if existing is not None:
        return existing
    try:
        async with session.begin_nested():
            session.add(notification)
    except IntegrityError:
        existing = await get_by_event_id(session, notification.event_id)
        if existing is None:
            raise
        return existing
    return notification


async def lock(session: AsyncSession, notification_id: str) -> Notification | None:
    """The row, locked until the transaction ends, so one replica at a time sends it.

    On SQLite the kit begins every transaction IMMEDIATE, which already serializes writers.
    """
    result = await session.execute(
        select(Notification)
        .where(Notification.id == notification_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def page_for_customer(
    session: AsyncSession,
    customer_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> Sequence[Notification]:
    """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
    query = select(Notification).where(Notification.customer_id == customer_id)
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                Notification.created_at < created_at,
                and_(Notification.created_at == created_at, Notification.id < last_id),
            )
        )
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def deliveries(session: AsyncSession, *, order_id: str | None) -> Sequence[Notification]:
    query = select(Notification)
    if order_id is not None:
        query = query.where(Notification.order_id == order_id)
    query = query.order_by(Notification.created_at, Notification.id)
    return (await session.execute(query)).scalars().all()
