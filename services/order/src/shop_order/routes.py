"""HTTP routes of the order service: thin, they parse and delegate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from shopkit.auth import CurrentUser, Internal
from shopkit.deps import SessionDep
from shopkit.errors import ProblemResponse
from starlette.responses import JSONResponse, Response

from shop_order import service
from shop_order.deps import SagaDep
from shop_order.domain import check_idempotency_key
from shop_order.saga import Answer
from shop_order.schemas import OrderAuditPage, OrderCreate, OrderPage, OrderRead

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
internal_router = APIRouter(prefix="/internal/orders", tags=["internal"], dependencies=[Internal])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
CHECKOUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": OrderRead, "description": "Charged; the order is confirmed shortly"},
    400: {**_PROBLEM, "description": "Missing or malformed Idempotency-Key, or empty cart"},
    402: {**_PROBLEM, "description": "Payment declined"},
    409: {**_PROBLEM, "description": "Not enough stock, or the same key is in flight"},
    422: {**_PROBLEM, "description": "Invalid body or payment token, or key reused"},
    503: {**_PROBLEM, "description": "A dependency is unavailable; nothing was charged"},
}


def render(answer: Answer) -> Response:
    cls = ProblemResponse if answer.status >= 400 else JSONResponse
    return cls(answer.body, status_code=answer.status, headers=answer.headers)


@router.post("", status_code=201, response_model=OrderRead, responses=CHECKOUT_RESPONSES)
async def place_order(
    body: OrderCreate,
    principal: CurrentUser,
    saga: SagaDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Place an order from the caller's cart."""
    key = check_idempotency_key(idempotency_key)
    return render(await saga.place_order(principal.user_id, key, body))


@router.get("")
async def list_orders(
    principal: CurrentUser,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, max_length=512),
) -> OrderPage:
    """List the caller's orders, newest first."""
    return await service.list_orders(
        customer_id=principal.user_id, limit=limit, cursor=cursor, session=session
    )


@router.get("/{order_id}")
async def get_order(order_id: str, principal: CurrentUser, session: SessionDep) -> OrderRead:
    """Get one of the caller's orders."""
    return await service.get_order(order_id, customer_id=principal.user_id, session=session)


@router.post("/{order_id}/cancel")
async def cancel_order(order_id: str, principal: CurrentUser, saga: SagaDep) -> OrderRead:
    """Cancel a confirmed order: refund it and return its stock."""
    return await saga.cancel(principal.user_id, order_id)


@internal_router.get("/audit")
async def audit(session: SessionDep) -> OrderAuditPage:
    """Every order with its status, total and idempotency key."""
    return await service.audit(session=session)
