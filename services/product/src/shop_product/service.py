"""Catalog and inventory rules. Functions take ``session`` by keyword and never commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from shopkit.db import utcnow
from shopkit.errors import ServiceUnavailable
from shopkit.metrics import RESERVATIONS_EXPIRED
from shopkit.schemas import Money, decode_cursor, encode_cursor, invalid_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from shop_product import repository as repo
from shop_product.errors import (
    InsufficientStock,
    ProductNotFound,
    ReservationClosed,
    ReservationCommitted,
    ReservationMismatch,
    ReservationNotCommitted,
    ReservationNotFound,
    SkuTaken,
    UnknownProducts,
)
from shop_product.models import (
    ACTIVE,
    COMMITTED,
    EXPIRED,
    LEDGER_ADJUSTMENT,
    LEDGER_INITIAL,
    RELEASED,
    RETURNED,
    Product,
    Reservation,
    ReservationLine,
)
from shop_product.schemas import (
    CategoryList,
    ProductCreate,
    ProductList,
    ProductLookup,
    ProductPage,
    ProductRead,
    ProductUpdate,
    ReservationCreate,
    ReservationLineRead,
    ReservationRead,
    StockAudit,
    StockAuditItem,
    StockUpdate,
)
from shop_product.seed import CATALOG, SeedProduct

log = logging.getLogger("shop_product.service")

CURSOR_KEYS = {"name", "id"}
ADMIN_REFERENCE = "admin"
SEED_REFERENCE = "seed"
# Seeded products get ids derived from their SKU, so every install names them the same way.
SEED_NAMESPACE = uuid.UUID("5e3d7c1a-9b0f-4d6e-8a2c-51ce5117ce00")


def product_read(product: Product) -> ProductRead:
    return ProductRead(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description,
        category=product.category,
        price=Money(amount=product.price_amount, currency="USD"),
        available=product.available,
    )


def reservation_read(reservation: Reservation) -> ReservationRead:
    return ReservationRead(
        order_id=reservation.order_id,
        status=reservation.status,
        expires_at=reservation.expires_at,
        items=[
            ReservationLineRead(
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=Money(amount=line.unit_price_amount, currency="USD"),
            )
            for line in sorted(reservation.lines, key=lambda line: line.product_id)
        ],
    )


# --- catalog -------------------------------------------------------------------------------


def _after(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor, CURSOR_KEYS)
    name, product_id = position["name"], position["id"]
    if not isinstance(name, str) or not isinstance(product_id, str):
        raise invalid_cursor()
    return name, product_id


async def list_products(
    *,
    session: AsyncSession,
    q: str | None,
    category: str | None,
    limit: int,
    cursor: str | None,
) -> ProductPage:
    rows = await repo.list_products(
        session, q=q or None, category=category, after=_after(cursor), limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor({"name": last.name, "id": last.id})
    return ProductPage(items=[product_read(p) for p in page], next_cursor=next_cursor)


async def _product(session: AsyncSession, product_id: str, *, lock: bool = False) -> Product:
    product = await repo.get_product(session, product_id, lock=lock)
    if product is None:
        raise ProductNotFound(f"no product with id {product_id}")
    return product


async def get_product(product_id: str, *, session: AsyncSession) -> ProductRead:
    return product_read(await _product(session, product_id))


async def list_categories(*, session: AsyncSession) -> CategoryList:
    return CategoryList(items=await repo.list_categories(session))


async def lookup_products(body: ProductLookup, *, session: AsyncSession) -> ProductList:
    wanted = list(dict.fromkeys(body.ids))
    found = {p.id: p for p in await repo.get_products(session, wanted)}
    return ProductList(items=[product_read(found[i]) for i in wanted if i in found])


def _admin_reference(actor: str) -> str:
    return f"{ADMIN_REFERENCE}:{actor}"[:100]


async def create_product(body: ProductCreate, *, session: AsyncSession, actor: str) -> ProductRead:
    if await repo.sku_in_use(session, body.sku):
        raise SkuTaken(f"SKU {body.sku} is already in use")
    now = utcnow()
    product = Product(
        id=str(uuid.uuid4()),
        sku=body.sku,
        name=body.name,
        description=body.description,
        category=body.category,
        price_amount=body.price.amount,
        currency=body.price.currency,
        on_hand=body.available,
        reserved=0,
        created_at=now,
        updated_at=now,
    )
    # The check above is for the common case; the unique index decides a race.
    if not await repo.add_product(session, product):
        raise SkuTaken(f"SKU {body.sku} is already in use")
    repo.add_ledger(session, product.id, LEDGER_INITIAL, body.available, _admin_reference(actor))
    return product_read(product)


async def update_product(
    product_id: str, body: ProductUpdate, *, session: AsyncSession
) -> ProductRead:
    product = await _product(session, product_id)
    changes = body.changes()
    sku = changes.get("sku")
    if sku is not None and sku != product.sku:
        if await repo.sku_in_use(session, sku, other_than=product.id):
            raise SkuTaken(f"SKU {sku} is already in use")
        product.sku = sku
    for field in ("name", "description", "category"):
        if field in changes:
            setattr(product, field, changes[field])
    if body.price is not None:
        product.price_amount = body.price.amount
        product.currency = body.price.currency
    if not await repo.save_product(session, product):
        raise SkuTaken(f"SKU {sku} is already in use")
    return product_read(product)


async def set_stock(
    product_id: str, body: StockUpdate, *, session: AsyncSession, actor: str
) -> ProductRead:
    # Locked (FOR UPDATE on PostgreSQL; SQLite writers are serialized already) so a reservation
    # landing between the read and the write cannot make `available` differ from what was asked.
    product = await _product(session, product_id, lock=True)
    target_on_hand = body.available + product.reserved
    delta = target_on_hand - product.on_hand
    if delta:
        product.on_hand = target_on_hand
        repo.add_ledger(session, product.id, LEDGER_ADJUSTMENT, delta, _admin_reference(actor))
    await repo.save_product(session, product)
    return product_read(product)


# --- reservations ---------------------------------------------------------------------------


def _merge(body: ReservationCreate) -> dict[str, int]:
    merged: dict[str, int] = {}
    for item in body.items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    return merged


def _replay(existing: Reservation, wanted: Mapping[str, int]) -> ReservationRead:
    if existing.status in (RELEASED, EXPIRED):
        raise ReservationClosed(f"order {existing.order_id} was {existing.status}")
    held = {line.product_id: line.quantity for line in existing.lines}
    if held != dict(wanted):
        raise ReservationMismatch(f"order {existing.order_id} already reserved other items")
    return reservation_read(existing)


async def _reservation(session: AsyncSession, order_id: str) -> Reservation:
    reservation = await repo.get_reservation(session, order_id)
    if reservation is None:
        raise ReservationNotFound(f"no reservation for order {order_id}")
    return reservation


async def reserve(
    body: ReservationCreate, *, session: AsyncSession, ttl_seconds: int
) -> tuple[ReservationRead, bool]:
    """Hold every line or none; the boolean says whether this call created the reservation."""
    wanted = _merge(body)
    existing = await repo.get_reservation(session, body.order_id)
    if existing is not None:
        return _replay(existing, wanted), False

    products = {p.id: p for p in await repo.get_products(session, wanted)}
    unknown = [pid for pid in wanted if pid not in products]
    if unknown:
        raise UnknownProducts(unknown)

    now = utcnow()
    reservation = Reservation(
        order_id=body.order_id,
        status=ACTIVE,
        expires_at=now + timedelta(seconds=ttl_seconds),
        created_at=now,
        updated_at=now,
        lines=[
            ReservationLine(
                product_id=pid,
                quantity=quantity,
                name=products[pid].name,
                unit_price_amount=products[pid].price_amount,
                currency=products[pid].currency,
            )
            for pid, quantity in sorted(wanted.items())
        ],
    )
    if not await repo.insert_reservation(session, reservation):
        # A concurrent call with the same order id won the insert; answer as a replay of it.
        existing = await repo.get_reservation(session, body.order_id)
        if existing is None:
            raise ServiceUnavailable("the reservation is being changed concurrently")
        return _replay(existing, wanted), False

    # Sorted, so two transactions always lock rows in the same order (no deadlock on PostgreSQL).
    short = [
        pid
        for pid, quantity in sorted(wanted.items())
        if not await repo.try_reserve_units(session, pid, quantity)
    ]
    if short:
        # Raising rolls the whole transaction back: the lines that did fit are not held either.
        current = {p.id: p for p in await repo.get_products(session, short)}
        raise InsufficientStock(
            [
                {
                    "product_id": pid,
                    "name": current[pid].name,
                    "requested": wanted[pid],
                    "available": current[pid].available,
                }
                for pid in short
            ]
        )
    return reservation_read(reservation), True


async def get_reservation(order_id: str, *, session: AsyncSession) -> ReservationRead:
    return reservation_read(await _reservation(session, order_id))


async def commit_reservation(order_id: str, *, session: AsyncSession) -> ReservationRead:
    reservation = await _reservation(session, order_id)
    if reservation.status == ACTIVE and await repo.transition(
        session, order_id, from_status=ACTIVE, to_status=COMMITTED
    ):
        for line in reservation.lines:
            await repo.sell_units(session, line.product_id, line.quantity, order_id)
    reservation = await _reservation(session, order_id)
    if reservation.status in (RELEASED, EXPIRED):
        raise ReservationClosed(f"order {order_id} was {reservation.status}")
    # committed, or already returned: the commit happened, repeating it changes nothing.
    return reservation_read(reservation)


async def release_reservation(order_id: str, *, session: AsyncSession) -> ReservationRead:
    reservation = await repo.get_reservation(session, order_id)
    if reservation is None:
        # A release may overtake its reserve (a timed-out call); the tombstone refuses it later.
        now = utcnow()
        tombstone = Reservation(
            order_id=order_id,
            status=RELEASED,
            expires_at=None,
            created_at=now,
            updated_at=now,
            lines=[],
        )
        if await repo.insert_reservation(session, tombstone):
            return reservation_read(tombstone)
        reservation = await _reservation(session, order_id)
    if reservation.status == ACTIVE and await repo.transition(
        session, order_id, from_status=ACTIVE, to_status=RELEASED
    ):
        for line in reservation.lines:
            await repo.unreserve_units(session, line.product_id, line.quantity)
    reservation = await _reservation(session, order_id)
    if reservation.status in (COMMITTED, RETURNED):
        raise ReservationCommitted(f"order {order_id} is {reservation.status}")
    return reservation_read(reservation)


async def restock_reservation(order_id: str, *, session: AsyncSession) -> ReservationRead:
    reservation = await _reservation(session, order_id)
    if reservation.status == COMMITTED and await repo.transition(
        session, order_id, from_status=COMMITTED, to_status=RETURNED
    ):
        for line in reservation.lines:
            await repo.return_units(session, line.product_id, line.quantity, order_id)
    reservation = await _reservation(session, order_id)
    if reservation.status != RETURNED:
        raise ReservationNotCommitted(f"order {order_id} is {reservation.status}")
    return reservation_read(reservation)


async def expire_due(*, session: AsyncSession, now: datetime, limit: int) -> int:
    """Release up to ``limit`` active reservations whose time is up; returns how many were due."""
    due = await repo.expired_reservation_ids(session, now, limit)
    for order_id in due:
        if await repo.transition(session, order_id, from_status=ACTIVE, to_status=EXPIRED):
            for line in await repo.reservation_lines(session, order_id):
                await repo.unreserve_units(session, line.product_id, line.quantity)
            RESERVATIONS_EXPIRED.inc()
    return len(due)


async def stock_audit(*, session: AsyncSession) -> StockAudit:
    rows = await repo.stock_audit_rows(session)
    return StockAudit(
        items=[
            StockAuditItem(
                product_id=row["product_id"],
                stocked=int(row["stocked"]),
                sold=int(row["sold"]),
                on_hand=int(row["on_hand"]),
                reserved=int(row["reserved"]),
                # Not clamped here: the audit must show a violation if there ever is one.
                available=int(row["on_hand"]) - int(row["reserved"]),
                reserved_by_reservations=int(row["reserved_by_reservations"]),
            )
            for row in rows
        ]
    )


# --- seed -----------------------------------------------------------------------------------


def seed_product_id(sku: str) -> str:
    return str(uuid.uuid5(SEED_NAMESPACE, sku))


async def seed_catalog(*, session: AsyncSession, catalog: Sequence[SeedProduct] = CATALOG) -> int:
    """Insert the bakery catalog into an empty products table; returns how many were added."""
    await repo.lock_for_seeding(session)
    if await repo.count_products(session) > 0:
        return 0
    now = utcnow()
    for item in catalog:
        product = Product(
            id=seed_product_id(item.sku),
            sku=item.sku,
            name=item.name,
            description=item.description,
            category=item.category,
            price_amount=item.price_cents,
            currency="USD",
            on_hand=item.stock,
            reserved=0,
            created_at=now,
            updated_at=now,
        )
        repo.add_new_product(session, product)
        repo.add_ledger(session, product.id, LEDGER_INITIAL, item.stock, SEED_REFERENCE)
    return len(catalog)
