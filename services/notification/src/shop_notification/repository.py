"""Every query of the notification service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from shopkit.db import add_unique, newest_first
from sqlalchemy import CursorResult, Result, and_, or_, select, update
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
    if not await add_unique(session, notification):
        existing = await get_by_event_id(session, notification.event_id)
        assert existing is not None, "the unique event id conflicted, so the row exists"
        return existing
    return notification


async def get(session: AsyncSession, notification_id: str) -> Notification | None:
    result = await session.execute(
        select(Notification)
        .where(Notification.id == notification_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def claim(
    session: AsyncSession,
    notification_id: str,
    *,
    recipient: str,
    now: datetime,
    stale_before: datetime,
) -> Notification | None:
    """Claim the row for one send: queued, or 'sending' under a claim older than
    ``stale_before`` (its sender died mid-send). None when it is not there to claim.

    One conditional UPDATE is the whole test-and-set: SQLite runs it under the write lock, and
    PostgreSQL re-checks the condition on the row it locked, so of two claimers racing exactly
    one matches. ``attempts`` goes up with every claim and so identifies the claim later.
    """
    result = await session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            or_(
                Notification.status == "queued",
                and_(Notification.status == "sending", Notification.claimed_at < stale_before),
            ),
        )
        .values(
            status="sending",
            attempts=Notification.attempts + 1,
            claimed_at=now,
            recipient=recipient,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return None
    return await get(session, notification_id)


async def settle_claim(
    session: AsyncSession,
    notification_id: str,
    *,
    attempt: int,
    status: str,
    last_error: str | None,
) -> bool:
    """End the claim made at ``attempt`` with ``status``; False when the claim is no longer
    held (taken over as stale, or given up on by a last delivery)."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status == "sending",
            Notification.attempts == attempt,
        )
        .values(status=status, claimed_at=None, last_error=last_error)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def mark_sent(session: AsyncSession, notification_id: str, *, now: datetime) -> bool:
    """Record that the relay took the message, whoever holds the claim by now: it is true."""
    result = await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.status != "sent")
        .values(status="sent", sent_at=now, claimed_at=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def mark_failed(session: AsyncSession, notification_id: str, *, last_error: str) -> bool:
    """Give up on a row not settled yet (queued, or claimed by a send still under way)."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status.in_(("queued", "sending")),
        )
        .values(status="failed", claimed_at=None, last_error=last_error)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def _rowcount(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult; the session's signature only promises a Result.
    return cast(CursorResult[Any], result).rowcount


async def page_for_customer(
    session: AsyncSession,
    customer_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> Sequence[Notification]:
    """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
    query = newest_first(
        select(Notification).where(Notification.customer_id == customer_id),
        Notification.created_at,
        Notification.id,
        after=after,
        limit=limit,
    )
    return (await session.execute(query)).scalars().all()


async def deliveries(session: AsyncSession, *, order_id: str | None) -> Sequence[Notification]:
    query = select(Notification)
    if order_id is not None:
        query = query.where(Notification.order_id == order_id)
    query = query.order_by(Notification.created_at, Notification.id)
    return (await session.execute(query)).scalars().all()
