"""Request and response shapes of the product service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator
from shopkit.schemas import Money, Page, StrictModel

MAX_PRICE = 10**9
MAX_AVAILABLE = 10**9
MAX_LINE_QUANTITY = 10**6

Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Category = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=36)]
OrderId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
]
# Strict integers: "5", 5.0 or true are not counts of anything.
Available = Annotated[int, Field(ge=0, le=MAX_AVAILABLE, strict=True)]
Quantity = Annotated[int, Field(ge=1, le=MAX_LINE_QUANTITY, strict=True)]


class Price(Money):
    amount: int = Field(ge=0, le=MAX_PRICE, strict=True, description="minor units (cents)")


class ProductCreate(StrictModel):
    sku: Sku
    name: Name
    description: Description = ""
    category: Category
    price: Price
    available: Available = 0


class ProductUpdate(StrictModel):
    sku: Sku | None = None
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    price: Price | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        # Omitting a field keeps it; sending null is not a way to erase a required attribute.
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(f"fields may be omitted but not null: {', '.join(sorted(nulls))}")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class StockUpdate(StrictModel):
    available: Available


class ProductRead(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    category: str
    price: Money
    available: int


class ProductPage(Page[ProductRead]):
    pass


class CategoryList(BaseModel):
    items: list[str]


class ProductLookup(StrictModel):
    ids: list[ProductId] = Field(min_length=1, max_length=100)


class ProductList(BaseModel):
    items: list[ProductRead]


class ReservationItem(StrictModel):
    product_id: ProductId
    quantity: Quantity


class ReservationCreate(StrictModel):
    order_id: OrderId
    items: list[ReservationItem] = Field(min_length=1, max_length=100)


ReservationStatus = Literal["active", "committed", "released", "expired", "returned"]


class ReservationLineRead(BaseModel):
    product_id: str
    name: str
    quantity: int
    unit_price: Money


class ReservationRead(BaseModel):
    order_id: str
    status: ReservationStatus
    expires_at: datetime | None
    items: list[ReservationLineRead]


class StockAuditItem(BaseModel):
    product_id: str
    stocked: int
    sold: int
    on_hand: int
    reserved: int
    available: int
    reserved_by_reservations: int


class StockAudit(BaseModel):
    items: list[StockAuditItem]
