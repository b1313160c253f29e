"""Client of the product service's reservation API (reserve, commit, release, restock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field
from shopkit.http import ServiceClient

from shop_order.clients.common import PeerMoney, problem_slug, segment, unexpected


class ReservedLine(BaseModel):
    product_id: str
    name: str
    quantity: int = Field(ge=1)
    unit_price: PeerMoney


class Reservation(BaseModel):
    order_id: str
    status: str
    items: list[ReservedLine] = Field(min_length=1)


class ReservationStatus(BaseModel):
    order_id: str
    status: str


@dataclass(frozen=True)
class ReserveRefused:
    """The product service said no; nothing was reserved for the order by this call."""

    reason: Literal["insufficient-stock", "unknown-product", "mismatch", "closed", "invalid"]
    products: list[Any] = field(default_factory=list)
    detail: str | None = None


@dataclass(frozen=True)
class TransitionRefused:
    """The reservation is not in a state that allows the transition (or does not exist)."""

    status: int
    slug: str


_REFUSALS: dict[str, Literal["insufficient-stock", "unknown-product", "mismatch", "closed"]] = {
    "insufficient-stock": "insufficient-stock",
    "unknown-product": "unknown-product",
    "reservation-mismatch": "mismatch",
    "reservation-closed": "closed",
}


class ProductClient(ServiceClient):
    peer = "product"

    async def reserve(
        self, order_id: str, items: list[tuple[str, int]]
    ) -> Reservation | ReserveRefused:
        body = {
            "order_id": order_id,
            "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
        }
        # Keyed by the order id: a repeat is answered with the same reservation.
        resp = await self.request("POST", "/internal/reservations", json_body=body, idempotent=True)
        if resp.status in (200, 201):
            return resp.model(Reservation, self.peer)
        if resp.status in (404, 409, 422):
            slug = problem_slug(resp.body)
            doc = resp.body if isinstance(resp.body, dict) else {}
            products = doc.get("products")
            detail = doc.get("detail")
            return ReserveRefused(
                reason=_REFUSALS.get(slug, "invalid"),
                products=products if isinstance(products, list) else [],
                detail=detail if isinstance(detail, str) else None,
            )
        raise unexpected(self.peer, resp)

    async def commit(self, order_id: str) -> ReservationStatus | TransitionRefused:
        return await self._transition(order_id, "commit")

    async def release(self, order_id: str) -> ReservationStatus | TransitionRefused:
        return await self._transition(order_id, "release")

    async def restock(self, order_id: str) -> ReservationStatus | TransitionRefused:
        return await self._transition(order_id, "restock")

    async def _transition(
        self, order_id: str, action: str
    ) -> ReservationStatus | TransitionRefused:
        resp = await self.request(
            "POST", f"/internal/reservations/{segment(order_id)}/{action}", idempotent=True
        )
        if resp.status == 200:
            return resp.model(ReservationStatus, self.peer)
        if resp.status in (404, 409):
            return TransitionRefused(resp.status, problem_slug(resp.body))
        raise unexpected(self.peer, resp)
