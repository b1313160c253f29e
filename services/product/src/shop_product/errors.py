"""Domain errors of the product service, rendered as problem+json by the kit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shopkit.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    slug = "product-not-found"
    title = "Product not found"


class SkuTaken(Conflict):
    slug = "sku-taken"
    title = "SKU is already in use"


class UnknownProducts(NotFound):
    slug = "unknown-product"
    title = "Unknown product"

    def __init__(self, product_ids: Sequence[str]) -> None:
        super().__init__(
            f"unknown product(s): {', '.join(product_ids)}",
            extra={"products": list(product_ids)},
        )


class InsufficientStock(Conflict):
    slug = "insufficient-stock"
    title = "Not enough stock"

    def __init__(self, shortages: Sequence[dict[str, Any]]) -> None:
        names = ", ".join(str(s["name"]) for s in shortages)
        super().__init__(f"not enough stock for: {names}", extra={"products": list(shortages)})


class ReservationNotFound(NotFound):
    slug = "reservation-not-found"
    title = "Reservation not found"


class ReservationMismatch(Conflict):
    slug = "reservation-mismatch"
    title = "This order id already holds a reservation for other items"


class ReservationClosed(Conflict):
    slug = "reservation-closed"
    title = "The reservation of this order was released or expired"


class ReservationCommitted(Conflict):
    slug = "reservation-committed"
    title = "The reservation of this order was already committed"


class ReservationNotCommitted(Conflict):
    slug = "reservation-not-committed"
    title = "Only committed reservations can be restocked"
