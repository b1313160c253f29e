"""HTTP routes: the customer's notifications, and the deliveries audit for peers and tests."""

from __future__ import annotations

from fastapi import APIRouter
from shopkit.auth import CurrentUser, Internal
from shopkit.deps import SessionDep

from shop_notification import service
from shop_notification.deps import Cursor, Limit, OrderFilter
from shop_notification.schemas import DeliveryList, NotificationPage

public = APIRouter(prefix="/api/v1", tags=["notifications"])
internal = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])


@public.get("/notifications", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> NotificationPage:
    """The caller's notifications, newest first."""
    return await service.list_notifications(
        user.user_id, limit=limit, cursor=cursor, session=session
    )


@internal.get("/deliveries", response_model=DeliveryList)
async def list_deliveries(session: SessionDep, order_id: OrderFilter = None) -> DeliveryList:
    """Every notification's delivery state, optionally for one order."""
    return await service.list_deliveries(order_id, session=session)
