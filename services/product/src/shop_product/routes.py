"""HTTP routes of the product service: the public catalog and the internal inventory API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from shopkit.auth import AdminUser, Internal
from shopkit.deps import SessionDep

from shop_product import service
from shop_product.deps import SettingsDep
from shop_product.schemas import (
    CategoryList,
    OrderId,
    ProductCreate,
    ProductList,
    ProductLookup,
    ProductPage,
    ProductRead,
    ProductUpdate,
    ReservationCreate,
    ReservationRead,
    StockAudit,
    StockUpdate,
)

public = APIRouter(prefix="/api/v1", tags=["catalog"])
internal = APIRouter(prefix="/internal", tags=["internal"], dependencies=[Internal])

# Any id that is not in the catalog is simply not found (404), however it looks.
ProductIdPath = Annotated[str, Path()]
OrderIdPath = Annotated[OrderId, Path()]


@public.get("/products")
async def list_products(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    category: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ProductPage:
    """Browse or search the catalog, ordered by name."""
    return await service.list_products(
        session=session, q=q, category=category, limit=limit, cursor=cursor
    )


@public.get("/products/{product_id}")
async def get_product(product_id: ProductIdPath, session: SessionDep) -> ProductRead:
    """One product."""
    return await service.get_product(product_id, session=session)


@public.get("/categories")
async def list_categories(session: SessionDep) -> CategoryList:
    """Every category that has at least one product."""
    return await service.list_categories(session=session)


@public.post("/products", status_code=status.HTTP_201_CREATED)
async def create_product(body: ProductCreate, admin: AdminUser, session: SessionDep) -> ProductRead:
    """Add a product to the catalog (admin)."""
    return await service.create_product(body, session=session, actor=admin.user_id)


@public.patch("/products/{product_id}")
async def update_product(
    product_id: ProductIdPath, body: ProductUpdate, _: AdminUser, session: SessionDep
) -> ProductRead:
    """Change a product's details (admin)."""
    return await service.update_product(product_id, body, session=session)


@public.put("/products/{product_id}/stock")
async def set_stock(
    product_id: ProductIdPath, body: StockUpdate, admin: AdminUser, session: SessionDep
) -> ProductRead:
    """Set how many units are available (admin)."""
    return await service.set_stock(product_id, body, session=session, actor=admin.user_id)


@internal.post("/products/lookup")
async def lookup_products(body: ProductLookup, session: SessionDep) -> ProductList:
    """Products by id; unknown ids are left out."""
    return await service.lookup_products(body, session=session)


@internal.post("/reservations", status_code=status.HTTP_201_CREATED)
async def reserve(
    body: ReservationCreate, response: Response, session: SessionDep, settings: SettingsDep
) -> ReservationRead:
    """Reserve stock for an order, all lines or none (idempotent by order id)."""
    reservation, created = await service.reserve(
        body, session=session, ttl_seconds=settings.reservation_ttl_seconds
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return reservation


@internal.get("/reservations/{order_id}")
async def get_reservation(order_id: OrderIdPath, session: SessionDep) -> ReservationRead:
    """The reservation of an order."""
    return await service.get_reservation(order_id, session=session)


@internal.post("/reservations/{order_id}/commit")
async def commit_reservation(order_id: OrderIdPath, session: SessionDep) -> ReservationRead:
    """Turn held units into sold ones (idempotent)."""
    return await service.commit_reservation(order_id, session=session)


@internal.post("/reservations/{order_id}/release")
async def release_reservation(order_id: OrderIdPath, session: SessionDep) -> ReservationRead:
    """Give held units back (idempotent)."""
    return await service.release_reservation(order_id, session=session)


@internal.post("/reservations/{order_id}/restock")
async def restock_reservation(order_id: OrderIdPath, session: SessionDep) -> ReservationRead:
    """Put the units of a committed, then cancelled, order back on hand (idempotent)."""
    return await service.restock_reservation(order_id, session=session)


@internal.get("/stock-audit")
async def stock_audit(session: SessionDep) -> StockAudit:
    """Stock columns beside totals recomputed from the ledger and the reservations."""
    return await service.stock_audit(session=session)
