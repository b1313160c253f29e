"""Every query of the product service. Functions take the caller's session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from shopkit.db import add_unique, utcnow
from sqlalchemy import CursorResult, and_, case, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from shop_product.models import (
    ACTIVE,
    LEDGER_ADJUSTMENT,
    LEDGER_INITIAL,
    LEDGER_RETURNED,
    LEDGER_SOLD,
    Product,
    Reservation,
    ReservationLine,
    StockLedger,
)

LIKE_ESCAPE = "\\"
SEED_LOCK = "shop_product.seed"


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def like_pattern(term: str) -> str:
    """A LIKE pattern matching ``term`` literally anywhere: '%' and '_' are not wildcards."""
    escaped = (
        term.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


# --- catalog -------------------------------------------------------------------------------


async def get_product(
    session: AsyncSession, product_id: str, *, lock: bool = False
) -> Product | None:
    stmt = select(Product).where(Product.id == product_id)
    if lock:
        stmt = stmt.with_for_update()
    # Stock columns move under conditional UPDATEs; always read what the database holds.
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_products(session: AsyncSession, product_ids: Iterable[str]) -> list[Product]:
    stmt = (
        select(Product)
        .where(Product.id.in_(list(product_ids)))
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def sku_in_use(session: AsyncSession, sku: str, *, other_than: str | None = None) -> bool:
    stmt = select(Product.id).where(Product.sku == sku)
    if other_than is not None:
        stmt = stmt.where(Product.id != other_than)
    return (await session.execute(stmt.limit(1))).first() is not None


async def list_products(
    session: AsyncSession,
    *,
    q: str | None,
    category: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[Product]:
    """Keyset page ordered by (name, id): stable under inserts, no OFFSET scans."""
    stmt = select(Product)
    if q:
        pattern = like_pattern(q)
        stmt = stmt.where(
            or_(
                Product.name.ilike(pattern, escape=LIKE_ESCAPE),
                Product.description.ilike(pattern, escape=LIKE_ESCAPE),
            )
        )
    if category is not None:
        stmt = stmt.where(Product.category == category)
    if after is not None:
        name, product_id = after
        stmt = stmt.where(
            or_(Product.name > name, and_(Product.name == name, Product.id > product_id))
        )
    stmt = stmt.order_by(Product.name, Product.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def list_categories(session: AsyncSession) -> list[str]:
    stmt = select(Product.category).distinct().order_by(Product.category)
    return list((await session.execute(stmt)).scalars())


async def add_product(session: AsyncSession, product: Product) -> bool:
    """Insert; False when the SKU (or id) is already taken, leaving the session usable."""
    return await add_unique(session, product)


def add_new_product(session: AsyncSession, product: Product) -> None:
    session.add(product)


async def save_product(session: AsyncSession, product: Product) -> bool:
    """Flush the product's changes; False on a unique-constraint clash (the caller must abort)."""
    product.updated_at = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        return False
    return True


async def count_products(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Product))).scalar_one())


async def lock_for_seeding(session: AsyncSession) -> None:
    """Serialize instances seeding at once (SQLite transactions start with the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(
            uuid.uuid5(uuid.NAMESPACE_URL, SEED_LOCK).bytes[:8], "big", signed=True
        )
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def add_ledger(
    session: AsyncSession, product_id: str, kind: str, delta: int, reference: str | None
) -> None:
    session.add(
        StockLedger(
            id=str(uuid.uuid4()),
            product_id=product_id,
            kind=kind,
            delta=delta,
            reference=reference,
            created_at=utcnow(),
        )
    )


# --- stock movements: each one a single conditional UPDATE, so concurrent writers cannot race --


async def try_reserve_units(session: AsyncSession, product_id: str, quantity: int) -> bool:
    stmt = (
        update(Product)
        .where(Product.id == product_id, Product.on_hand - Product.reserved >= quantity)
        .values(reserved=Product.reserved + quantity)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(await session.execute(stmt)) == 1


async def unreserve_units(session: AsyncSession, product_id: str, quantity: int) -> None:
    stmt = (
        update(Product)
        .where(Product.id == product_id)
        .values(reserved=Product.reserved - quantity)
        .execution_options(synchronize_session=False)
    )
    await session.execute(stmt)


async def sell_units(session: AsyncSession, product_id: str, quantity: int, reference: str) -> None:
    stmt = (
        update(Product)
        .where(Product.id == product_id)
        .values(reserved=Product.reserved - quantity, on_hand=Product.on_hand - quantity)
        .execution_options(synchronize_session=False)
    )
    await session.execute(stmt)
    add_ledger(session, product_id, LEDGER_SOLD, -quantity, reference)


async def return_units(
    session: AsyncSession, product_id: str, quantity: int, reference: str
) -> None:
    stmt = (
        update(Product)
        .where(Product.id == product_id)
        .values(on_hand=Product.on_hand + quantity)
        .execution_options(synchronize_session=False)
    )
    await session.execute(stmt)
    add_ledger(session, product_id, LEDGER_RETURNED, quantity, reference)


# --- reservations ---------------------------------------------------------------------------


async def get_reservation(session: AsyncSession, order_id: str) -> Reservation | None:
    stmt = (
        select(Reservation)
        .where(Reservation.order_id == order_id)
        .options(selectinload(Reservation.lines))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_reservation(session: AsyncSession, reservation: Reservation) -> bool:
    """Claim the order id; False when another transaction holds it already."""
    return await add_unique(session, reservation)


def add_reservation_lines(session: AsyncSession, lines: Sequence[ReservationLine]) -> None:
    session.add_all(lines)


async def transition(
    session: AsyncSession, order_id: str, *, from_status: str, to_status: str
) -> bool:
    """Move a reservation between states only if nobody moved it first (compare-and-set)."""
    stmt = (
        update(Reservation)
        .where(Reservation.order_id == order_id, Reservation.status == from_status)
        .values(status=to_status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _rowcount(await session.execute(stmt)) == 1


async def expired_reservation_ids(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    stmt = (
        select(Reservation.order_id)
        .where(Reservation.status == ACTIVE, Reservation.expires_at < now)
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def reservation_lines(session: AsyncSession, order_id: str) -> list[ReservationLine]:
    stmt = select(ReservationLine).where(ReservationLine.order_id == order_id)
    return list((await session.execute(stmt)).scalars())


# --- audit ----------------------------------------------------------------------------------


async def stock_audit_rows(session: AsyncSession) -> list[Mapping[str, Any]]:
    """Per product: stock columns next to totals recomputed from the ledger and reservations."""
    ledger = (
        select(
            StockLedger.product_id.label("product_id"),
            func.coalesce(
                func.sum(
                    case(
                        (
                            StockLedger.kind.in_([LEDGER_INITIAL, LEDGER_ADJUSTMENT]),
                            StockLedger.delta,
                        ),
                        else_=0,
                    )
                ),
                0,
            ).label("stocked"),
            func.coalesce(
                func.sum(
                    case(
                        (StockLedger.kind.in_([LEDGER_SOLD, LEDGER_RETURNED]), -StockLedger.delta),
                        else_=0,
                    )
                ),
                0,
            ).label("sold"),
        )
        .group_by(StockLedger.product_id)
        .subquery()
    )
    held = (
        select(
            ReservationLine.product_id.label("product_id"),
            func.sum(ReservationLine.quantity).label("held"),
        )
        .join(Reservation, Reservation.order_id == ReservationLine.order_id)
        .where(Reservation.status == ACTIVE)
        .group_by(ReservationLine.product_id)
        .subquery()
    )
    stmt = (
        select(
            Product.id.label("product_id"),
            func.coalesce(ledger.c.stocked, 0).label("stocked"),
            func.coalesce(ledger.c.sold, 0).label("sold"),
            Product.on_hand,
            Product.reserved,
            func.coalesce(held.c.held, 0).label("reserved_by_reservations"),
        )
        .outerjoin(ledger, ledger.c.product_id == Product.id)
        .outerjoin(held, held.c.product_id == Product.id)
        .order_by(Product.id)
    )
    return list((await session.execute(stmt)).mappings())
