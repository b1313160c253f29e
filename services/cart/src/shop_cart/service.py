"""Carts: one per customer, lines checked against the catalog, priced from it when shown.

Functions take the request's session and never commit. Every change of a cart bumps its
version, which checkout uses to clear only the cart it actually ordered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shopkit.db import utcnow
from shopkit.http import PeerUnavailable
from shopkit.schemas import Money
from sqlalchemy.ext.asyncio import AsyncSession

from shop_cart import repository
from shop_cart.clients.product import CatalogProduct, ProductClient, ProductIdsRejected
from shop_cart.errors import CartFull, UnknownProduct
from shop_cart.models import CartLine
from shop_cart.repository import LineRow
from shop_cart.schemas import CartItemRead, CartLineRef, CartRead, InternalCartRead

log = logging.getLogger("shop_cart.service")


async def get_cart(customer_id: str, *, session: AsyncSession, catalog: ProductClient) -> CartRead:
    stored = await repository.lines(session, customer_id)
    await repository.end_read(session)
    return _render(stored, await _prices(catalog, [line.product_id for line in stored]))


async def set_item(
    customer_id: str,
    product_id: str,
    quantity: int,
    *,
    session: AsyncSession,
    catalog: ProductClient,
    max_lines: int,
) -> CartRead:
    stored = await repository.lines(session, customer_id)
    await repository.end_read(session)
    # One lookup checks the new product and prices the whole cart for the answer.
    asked = [product_id, *(line.product_id for line in stored)]
    try:
        products = await catalog.lookup(asked)
    except ProductIdsRejected as exc:
        raise UnknownProduct(f"no product {product_id!r}") from exc
    product = products.get(product_id)
    if product is None:
        raise UnknownProduct(f"no product {product_id!r}")
    now = utcnow()
    await repository.ensure_cart(session, customer_id, now)
    await repository.bump_version(session, customer_id, now)
    line = await repository.get_line(session, customer_id, product_id)
    if line is None:
        if await repository.count_lines(session, customer_id) >= max_lines:
            raise CartFull(f"a cart holds at most {max_lines} different products")
        line = CartLine(
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            name=product.name,
            unit_price=product.price.amount,
            added_at=now,
        )
        await repository.add_line(session, line)
    else:
        line.quantity = quantity
        line.name = product.name
        line.unit_price = product.price.amount
    return _render(await repository.lines(session, customer_id), Prices(products, set(asked)))


async def remove_item(
    customer_id: str, product_id: str, *, session: AsyncSession, catalog: ProductClient
) -> CartRead:
    stored = await repository.lines(session, customer_id)
    await repository.end_read(session)
    prices = await _prices(catalog, [line.product_id for line in stored])
    if await repository.delete_line(session, customer_id, product_id):
        await repository.bump_version(session, customer_id, utcnow())
    return _render(await repository.lines(session, customer_id), prices)


async def empty_cart(customer_id: str, *, session: AsyncSession) -> None:
    if await repository.delete_lines(session, customer_id):
        await repository.bump_version(session, customer_id, utcnow())


async def internal_cart(customer_id: str, *, session: AsyncSession) -> InternalCartRead:
    cart = await repository.get_cart(session, customer_id)
    stored = await repository.lines(session, customer_id)
    return InternalCartRead(
        customer_id=customer_id,
        version=cart.version if cart is not None else 0,
        items=[CartLineRef(product_id=line.product_id, quantity=line.quantity) for line in stored],
    )


async def clear_if_version(customer_id: str, version: int, *, session: AsyncSession) -> bool:
    """Empty the cart only if nobody changed it since ``version`` was read (checkout's view)."""
    cart = await repository.get_cart(session, customer_id)
    if cart is None:
        # Never written: it is empty at version 0, which is all a version-0 reader saw.
        return version == 0
    if not await repository.bump_version_if(session, customer_id, version, utcnow()):
        return False
    await repository.delete_lines(session, customer_id)
    return True


@dataclass(frozen=True)
class Prices:
    """The catalog's answer for the ``asked`` ids; ``products`` is None when it gave none."""

    products: Mapping[str, CatalogProduct] | None
    asked: set[str]


async def _prices(catalog: ProductClient, ids: list[str]) -> Prices:
    if not ids:
        return Prices({}, set())
    try:
        return Prices(await catalog.lookup(ids), set(ids))
    except (PeerUnavailable, ProductIdsRejected) as exc:
        # The cart keeps rendering while the catalog is away, at the prices last seen.
        log.warning("pricing cart from snapshots: %s", exc)
        return Prices(None, set(ids))


def _render(stored: Sequence[LineRow], prices: Prices) -> CartRead:
    """Price lines from the catalog, else from the snapshots stored with them."""
    items: list[CartItemRead] = []
    for line in stored:
        product = prices.products.get(line.product_id) if prices.products is not None else None
        if product is not None:
            name, price = product.name, product.price.amount
        elif prices.products is not None and line.product_id in prices.asked:
            # Gone from the catalog: it can no longer be bought, so it is not shown.
            continue
        else:
            # No answer from the catalog, or a line added by a concurrent request after the
            # lookup: its snapshot was taken from the catalog moments ago.
            name, price = line.name, line.unit_price
        items.append(
            CartItemRead(
                product_id=line.product_id,
                name=name,
                quantity=line.quantity,
                unit_price=Money(amount=price),
                line_total=Money(amount=price * line.quantity),
            )
        )
    return CartRead(items=items, total=Money(amount=sum(i.line_total.amount for i in items)))
