"""Errors of the cart service, rendered as problem+json by the kit."""

from __future__ import annotations

from shopkit.errors import NotFound, Unprocessable


class UnknownProduct(NotFound):
    slug = "unknown-product"
    title = "Unknown product"


class CartFull(Unprocessable):
    slug = "cart-full"
    title = "The cart has too many lines"
