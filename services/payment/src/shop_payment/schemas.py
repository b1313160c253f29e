"""Request and response bodies of the payment service's internal API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from shopkit.schemas import Money, StrictModel

from shop_payment.provider import DeclineCode

MAX_AMOUNT = 10**12


class PositiveMoney(Money):
    """An amount to move: whole cents above zero, and never a string or float in disguise."""

    model_config = ConfigDict(strict=True)

    amount: int = Field(gt=0, le=MAX_AMOUNT, description="minor units (cents)")


class ChargeCreate(StrictModel):
    model_config = ConfigDict(strict=True)

    idempotency_key: str = Field(min_length=1, max_length=255)
    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    amount: PositiveMoney
    payment_token: str = Field(min_length=1, max_length=255)


class ChargeRead(BaseModel):
    id: str
    order_id: str
    customer_id: str
    status: Literal["succeeded", "declined"]
    decline_code: DeclineCode | None
    amount: Money
    refunded: Money
    created_at: datetime


class ChargeList(BaseModel):
    items: list[ChargeRead]


class RefundCreate(StrictModel):
    model_config = ConfigDict(strict=True)

    idempotency_key: str = Field(min_length=1, max_length=255)
    charge_id: str = Field(min_length=1, max_length=64)
    amount: PositiveMoney


class RefundRead(BaseModel):
    id: str
    charge_id: str
    order_id: str
    amount: Money
    created_at: datetime


class OrderLedger(BaseModel):
    charges: int
    charged: int
    refunds: int
    refunded: int


class LedgerRead(BaseModel):
    charged: int
    refunded: int
    orders: dict[str, OrderLedger]
