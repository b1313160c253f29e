"""Client of the cart service's internal API."""

from __future__ import annotations

from pydantic import BaseModel, Field
from shopkit.http import ServiceClient

from shop_order.clients.common import segment, unexpected


class CartLine(BaseModel):
    product_id: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class CartSnapshot(BaseModel):
    customer_id: str
    version: int
    items: list[CartLine]


class ClearResult(BaseModel):
    cleared: bool


class CartClient(ServiceClient):
    peer = "cart"

    async def get_cart(self, customer_id: str) -> CartSnapshot:
        resp = await self.request("GET", f"/internal/carts/{segment(customer_id)}")
        if resp.status != 200:
            raise unexpected(self.peer, resp)
        return resp.model(CartSnapshot, self.peer)

    async def clear(self, customer_id: str, version: int) -> bool:
        """Empty the cart only if it is still the one that was ordered (same version)."""
        resp = await self.request(
            "POST",
            f"/internal/carts/{segment(customer_id)}/clear",
            json_body={"version": version},
            idempotent=True,  # conditional on the version: a repeat clears nothing new
        )
        if resp.status != 200:
            raise unexpected(self.peer, resp)
        return resp.model(ClearResult, self.peer).cleared
