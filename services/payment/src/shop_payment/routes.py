"""Internal routes of the payment service (never routed by the gateway)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status
from shopkit.auth import Internal
from shopkit.deps import SessionDep

from shop_payment import service
from shop_payment.deps import ProviderDep
from shop_payment.schemas import (
    ChargeCreate,
    ChargeList,
    ChargeRead,
    LedgerRead,
    RefundCreate,
    RefundRead,
)

router = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])


@router.post("/charges", status_code=status.HTTP_201_CREATED)
async def create_charge(
    body: ChargeCreate, session: SessionDep, provider: ProviderDep, response: Response
) -> ChargeRead:
    """Charge a payment token once per idempotency key."""
    result = await service.create_charge(body, session=session, provider=provider)
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return result.charge


@router.get("/charges")
async def list_charges(
    session: SessionDep, order_id: str = Query(min_length=1, max_length=64)
) -> ChargeList:
    """List every charge attempt of one order, oldest first."""
    return ChargeList(items=await service.charges_for_order(order_id, session=session))


@router.post("/refunds", status_code=status.HTTP_201_CREATED)
async def create_refund(
    body: RefundCreate, session: SessionDep, provider: ProviderDep, response: Response
) -> RefundRead:
    """Refund part or all of a succeeded charge once per idempotency key."""
    result = await service.create_refund(body, session=session, provider=provider)
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return result.refund


@router.get("/ledger")
async def ledger(session: SessionDep) -> LedgerRead:
    """Totals of succeeded charges and their refunds, per order."""
    return await service.ledger(session=session)
