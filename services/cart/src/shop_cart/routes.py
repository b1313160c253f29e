"""Routes of the cart service: the customer's cart, and the checkout's internal view."""

from __future__ import annotations

from fastapi import APIRouter, status
from shopkit.auth import CurrentUser, Internal
from shopkit.deps import SessionDep

from shop_cart import service
from shop_cart.deps import CatalogDep, CustomerIdPath, ProductIdPath, SettingsDep
from shop_cart.schemas import CartClear, CartCleared, CartItemUpdate, CartRead, InternalCartRead

public = APIRouter(prefix="/api/v1/cart", tags=["cart"])
internal = APIRouter(prefix="/internal/carts", tags=["internal"], dependencies=[Internal])


@public.get("")
async def get_cart(user: CurrentUser, session: SessionDep, catalog: CatalogDep) -> CartRead:
    """The caller's cart, priced from the catalog."""
    return await service.get_cart(user.user_id, session=session, catalog=catalog)


@public.put("/items/{product_id}")
async def set_item(
    product_id: ProductIdPath,
    body: CartItemUpdate,
    *,
    user: CurrentUser,
    session: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> CartRead:
    """Set the quantity of one product in the caller's cart."""
    return await service.set_item(
        user.user_id,
        product_id,
        body.quantity,
        session=session,
        catalog=catalog,
        max_lines=settings.max_lines,
    )


@public.delete("/items/{product_id}")
async def remove_item(
    product_id: ProductIdPath, user: CurrentUser, session: SessionDep, catalog: CatalogDep
) -> CartRead:
    """Remove one product from the caller's cart (idempotent)."""
    return await service.remove_item(user.user_id, product_id, session=session, catalog=catalog)


@public.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def empty_cart(user: CurrentUser, session: SessionDep) -> None:
    """Remove every line from the caller's cart."""
    await service.empty_cart(user.user_id, session=session)


@internal.get("/{customer_id}")
async def internal_cart(customer_id: CustomerIdPath, session: SessionDep) -> InternalCartRead:
    """A customer's cart lines and version, for checkout."""
    return await service.internal_cart(customer_id, session=session)


@internal.post("/{customer_id}/clear")
async def clear_cart(
    customer_id: CustomerIdPath, body: CartClear, session: SessionDep
) -> CartCleared:
    """Empty a customer's cart if it still has the version checkout ordered from."""
    cleared = await service.clear_if_version(customer_id, body.version, session=session)
    return CartCleared(cleared=cleared)
