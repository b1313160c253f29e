"""Shapes of the public and internal answers, and of the event data this service reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from shopkit.schemas import Money, Page

NotificationType = Literal["order_confirmed", "order_cancelled", "payment_failed"]
NotificationStatus = Literal["queued", "sent", "failed"]


def _public_status(value: object) -> object:
    # 'sending' (a send under way, see repository.claim) is internal; to readers it is still
    # waiting to go out, and the contract knows only queued|sent|failed.
    return "queued" if value == "sending" else value


PublicStatus = Annotated[NotificationStatus, BeforeValidator(_public_status)]

# Ids arrive from other services' events and end up in mail headers: plain tokens only, so a
# hostile value cannot inject a header or bloat a subject line.
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class NotificationRead(BaseModel):
    id: str
    type: NotificationType
    order_id: str
    channel: Literal["email"]
    subject: str
    status: PublicStatus
    created_at: datetime


class NotificationPage(Page[NotificationRead]):
    pass


class DeliveryRead(BaseModel):
    event_id: str
    type: NotificationType
    order_id: str
    status: PublicStatus
    attempts: int


class DeliveryList(BaseModel):
    items: list[DeliveryRead]


class EventData(BaseModel):
    """Event payloads may grow new fields (publishers add, never rename): extras are ignored."""

    model_config = ConfigDict(extra="ignore")

    order_id: Identifier
    customer_id: Identifier


class OrderItemData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)


class OrderConfirmedData(EventData):
    total: Money
    items: list[OrderItemData] = Field(default_factory=list, max_length=200)


class OrderCancelledData(EventData):
    refunded: Money


class PaymentDeclinedData(EventData):
    decline_code: str | None = Field(default=None, max_length=64)
    amount: Money
