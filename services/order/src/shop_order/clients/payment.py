"""Client of the payment service's internal API (charges and refunds, idempotent by key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from shopkit.http import ServiceClient

from shop_order.clients.common import PeerMoney, problem_slug, unexpected


class Charge(BaseModel):
    id: str
    order_id: str
    status: Literal["succeeded", "declined"]
    decline_code: str | None = None
    amount: PeerMoney
    refunded: PeerMoney = PeerMoney(amount=0)


class ChargeList(BaseModel):
    items: list[Charge]


class Refund(BaseModel):
    id: str
    charge_id: str
    amount: PeerMoney


@dataclass(frozen=True)
class PaymentRefused:
    """A 4xx from payment: the call was understood and refused (bad token, reused key...)."""

    status: int
    slug: str


class PaymentClient(ServiceClient):
    peer = "payment"

    async def charge(
        self,
        *,
        idempotency_key: str,
        order_id: str,
        customer_id: str,
        amount: int,
        payment_token: str,
    ) -> Charge | PaymentRefused:
        body = {
            "idempotency_key": idempotency_key,
            "order_id": order_id,
            "customer_id": customer_id,
            "amount": {"amount": amount, "currency": "USD"},
            "payment_token": payment_token,
        }
        resp = await self.request("POST", "/internal/charges", json_body=body)
        if resp.status in (200, 201):
            return resp.model(Charge, self.peer)
        if 400 <= resp.status < 500 and resp.status not in (401, 403):
            return PaymentRefused(resp.status, problem_slug(resp.body))
        raise unexpected(self.peer, resp)

    async def charges_for(self, order_id: str) -> list[Charge]:
        resp = await self.request("GET", "/internal/charges", params={"order_id": order_id})
        if resp.status != 200:
            raise unexpected(self.peer, resp)
        return resp.model(ChargeList, self.peer).items

    async def refund(
        self, *, idempotency_key: str, charge_id: str, amount: int
    ) -> Refund | PaymentRefused:
        body = {
            "idempotency_key": idempotency_key,
            "charge_id": charge_id,
            "amount": {"amount": amount, "currency": "USD"},
        }
        resp = await self.request("POST", "/internal/refunds", json_body=body, idempotent=True)
        if resp.status in (200, 201):
            return resp.model(Refund, self.peer)
        if resp.status in (404, 409, 422):
            return PaymentRefused(resp.status, problem_slug(resp.body))
        raise unexpected(self.peer, resp)
