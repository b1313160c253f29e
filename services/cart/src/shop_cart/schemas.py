"""Request and response bodies of the cart service."""

from __future__ import annotations

from pydantic import BaseModel, Field
from shopkit.schemas import Money, StrictModel

MAX_QUANTITY = 99


class CartItemUpdate(StrictModel):
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)


class CartItemRead(BaseModel):
    product_id: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money


class CartRead(BaseModel):
    items: list[CartItemRead]
    total: Money


class CartLineRef(BaseModel):
    product_id: str
    quantity: int


class InternalCartRead(BaseModel):
    customer_id: str
    version: int
    items: list[CartLineRef]


class CartClear(StrictModel):
    version: int = Field(ge=0, le=2**31 - 1, strict=True)


class CartCleared(BaseModel):
    cleared: bool
