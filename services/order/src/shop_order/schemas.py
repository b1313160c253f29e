"""Request and response shapes of the order service's own API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from shopkit.schemas import Money, Page, StrictModel

OrderStatus = Literal["pending", "confirmed", "failed", "cancelled"]


class ShippingAddress(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    line1: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case")


class OrderCreate(StrictModel):
    payment_token: str = Field(min_length=1, max_length=200)
    shipping_address: ShippingAddress


class OrderItemRead(BaseModel):
    product_id: str
    name: str
    quantity: int
    unit_price: Money


class OrderFailure(BaseModel):
    code: str
    detail: str | None = None


class OrderRead(BaseModel):
    id: str
    status: OrderStatus
    items: list[OrderItemRead]
    total: Money
    shipping_address: ShippingAddress
    failure: OrderFailure | None = None
    created_at: datetime
    updated_at: datetime


class OrderPage(Page[OrderRead]):
    pass


class OrderAuditRead(BaseModel):
    id: str
    customer_id: str
    status: OrderStatus
    saga_step: str
    total: Money
    idempotency_key: str


class OrderAuditPage(BaseModel):
    items: list[OrderAuditRead]
