"""The saga's decisions as plain functions: no I/O, so every rule is unit-tested on its own.

An order has a ``status`` (what the customer sees) and a ``saga_step`` (how far the checkout or
its compensation got). Every change goes through :func:`can_transition`, and the recovery loop
picks its work with :func:`recovery_action`, so the state machine is written down once, here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shopkit.errors import DomainError

from shop_order.errors import (
    IdempotencyKeyInvalid,
    IdempotencyKeyRequired,
    InsufficientFunds,
    InsufficientStock,
    PaymentDeclined,
    RequestInProgress,
    ReservationUnavailable,
    UnknownProduct,
)
from shop_order.schemas import OrderCreate

# RFC 9110 field values may carry any visible ASCII and spaces; the key is compared verbatim.
_KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")


class Status(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Step(StrEnum):
    # pending: the checkout moving forward
    CREATED = "created"
    RESERVING = "reserving"
    RESERVED = "reserved"
    CHARGING = "charging"
    CHARGED = "charged"
    COMMITTED = "committed"
    # confirmed, and its cancellation
    CONFIRMED = "confirmed"
    CANCELLING = "cancelling"
    CANCEL_REFUNDED = "cancel-refunded"
    CANCELLED = "cancelled"
    # failed, and what compensation is left to do
    REJECTED = "rejected"  # refused before anything was reserved: nothing to undo
    RELEASING = "releasing"  # the reservation still has to be released
    RELEASED = "released"
    CHARGE_UNKNOWN = "charge-unknown"  # a charge may exist that we never heard of
    COMPENSATED = "compensated"
    VOIDING = "voiding"  # money was taken but the order cannot be fulfilled: refund it
    VOIDED = "voided"


TRANSITIONS: dict[tuple[Status, Step], frozenset[tuple[Status, Step]]] = {
    (Status.PENDING, Step.CREATED): frozenset(
        {(Status.PENDING, Step.RESERVING), (Status.FAILED, Step.REJECTED)}
    ),
    (Status.PENDING, Step.RESERVING): frozenset(
        {
            (Status.PENDING, Step.RESERVED),
            (Status.FAILED, Step.REJECTED),
            (Status.FAILED, Step.RELEASING),
            (Status.FAILED, Step.RELEASED),
        }
    ),
    (Status.PENDING, Step.RESERVED): frozenset(
        {
            (Status.PENDING, Step.CHARGING),
            (Status.PENDING, Step.CHARGED),  # nothing to charge (a free order)
            (Status.FAILED, Step.RELEASING),
            (Status.FAILED, Step.RELEASED),
        }
    ),
    (Status.PENDING, Step.CHARGING): frozenset(
        {
            (Status.PENDING, Step.CHARGED),
            (Status.FAILED, Step.RELEASING),
            (Status.FAILED, Step.CHARGE_UNKNOWN),
        }
    ),
    (Status.PENDING, Step.CHARGED): frozenset(
        {(Status.PENDING, Step.COMMITTED), (Status.FAILED, Step.VOIDING)}
    ),
    (Status.PENDING, Step.COMMITTED): frozenset({(Status.CONFIRMED, Step.CONFIRMED)}),
    (Status.CONFIRMED, Step.CONFIRMED): frozenset({(Status.CONFIRMED, Step.CANCELLING)}),
    (Status.CONFIRMED, Step.CANCELLING): frozenset(
        {
            (Status.CONFIRMED, Step.CANCELLING),  # a retried cancel takes it over
            (Status.CONFIRMED, Step.CANCEL_REFUNDED),
            (Status.CONFIRMED, Step.CONFIRMED),  # the refund never happened: back out
        }
    ),
    (Status.CONFIRMED, Step.CANCEL_REFUNDED): frozenset(
        {(Status.CONFIRMED, Step.CANCEL_REFUNDED), (Status.CANCELLED, Step.CANCELLED)}
    ),
    (Status.FAILED, Step.RELEASING): frozenset({(Status.FAILED, Step.RELEASED)}),
    (Status.FAILED, Step.CHARGE_UNKNOWN): frozenset({(Status.FAILED, Step.COMPENSATED)}),
    (Status.FAILED, Step.VOIDING): frozenset({(Status.FAILED, Step.VOIDED)}),
}


def can_transition(current: tuple[str, str], target: tuple[str, str]) -> bool:
    try:
        key = (Status(current[0]), Step(current[1]))
        goal = (Status(target[0]), Step(target[1]))
    except ValueError:
        return False
    return goal in TRANSITIONS.get(key, frozenset())


def check_idempotency_key(raw: str | None) -> str:
    if raw is None or raw == "":
        raise IdempotencyKeyRequired()
    if not _KEY_PATTERN.fullmatch(raw):
        raise IdempotencyKeyInvalid()
    return raw


def request_fingerprint(body: OrderCreate) -> str:
    """SHA-256 of the canonical body: key order and insignificant whitespace do not count."""
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Admission(StrEnum):
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_PROGRESS = "in-progress"


def admission(stored_fingerprint: str, has_final_answer: bool, fingerprint: str) -> Admission:
    """What a request carrying an already used key gets."""
    if stored_fingerprint != fingerprint:
        return Admission.MISMATCH
    if not has_final_answer:
        return Admission.IN_PROGRESS
    return Admission.REPLAY


def merge_lines(lines: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """One line per product, in first-seen order, quantities summed."""
    merged: dict[str, int] = {}
    for product_id, quantity in lines:
        merged[product_id] = merged.get(product_id, 0) + quantity
    return list(merged.items())


def order_total(lines: Iterable[tuple[int, int]]) -> int:
    """Sum of quantity x unit price (minor units) over ``(quantity, unit_amount)`` pairs."""
    return sum(quantity * unit for quantity, unit in lines)


@dataclass(frozen=True)
class ChargeView:
    """What the saga needs to know about one charge, independent of the client's model."""

    id: str
    status: str
    decline_code: str | None
    amount: int
    refunded: int

    @property
    def refundable(self) -> int:
        return max(self.amount - self.refunded, 0) if self.status == "succeeded" else 0


class ChargeFinding(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    NONE = "none"


def classify_charges(charges: Sequence[ChargeView]) -> tuple[ChargeFinding, ChargeView | None]:
    """An order is charged at most once (one payment key per order); a success wins."""
    for charge in charges:
        if charge.status == "succeeded":
            return ChargeFinding.SUCCEEDED, charge
    for charge in charges:
        if charge.status == "declined":
            return ChargeFinding.DECLINED, charge
    return ChargeFinding.NONE, None


def decline_error(decline_code: str | None, order_id: str) -> PaymentDeclined:
    cls = InsufficientFunds if decline_code == "insufficient-funds" else PaymentDeclined
    return cls(
        "the payment was declined; nothing was charged",
        extra={"order_id": order_id, "decline_code": decline_code or "card-declined"},
    )


def reservation_refusal(
    reason: str, products: Sequence[object], detail: str | None, order_id: str
) -> tuple[DomainError, Step]:
    """The answer for a refused reservation, and the failed step: only a mismatch (a reservation
    for this order id with other lines) may have left something held, so only it is released."""
    if reason == "insufficient-stock":
        names = [
            str(p.get("name") or p.get("product_id"))
            for p in products
            if isinstance(p, dict) and (p.get("name") or p.get("product_id"))
        ]
        text = "not enough stock for: " + ", ".join(names) if names else "not enough stock"
        error: DomainError = InsufficientStock(
            text, extra={"order_id": order_id, "products": list(products)}
        )
        return error, Step.REJECTED
    if reason == "unknown-product":
        error = UnknownProduct(
            "some products are no longer sold",
            extra={"order_id": order_id, "products": list(products)},
        )
        return error, Step.REJECTED
    error = ReservationUnavailable(detail, extra={"order_id": order_id})
    return error, Step.RELEASING if reason == "mismatch" else Step.REJECTED


def charge_key(order_id: str) -> str:
    return f"order-{order_id}-charge"


def refund_key(order_id: str) -> str:
    return f"order-{order_id}-refund"


def void_key(order_id: str) -> str:
    return f"order-{order_id}-charge-void"


class RecoveryAction(StrEnum):
    DISCARD = "discard"  # created, nothing done: forget the row
    ROLL_BACK = "roll-back"  # reserved at most, never charged: release and fail
    RESOLVE_CHARGE = "resolve-charge"  # a charge may be in flight: ask payment
    COMPLETE = "complete"  # charged: commit the reservation and confirm
    CONFIRM = "confirm"  # committed: confirm
    RELEASE = "release"  # failed, the reservation still held
    SETTLE_CHARGE = "settle-charge"  # failed with a charge maybe taken: refund it
    VOID = "void"  # failed after the charge: refund it
    RESOLVE_CANCEL = "resolve-cancel"  # a cancel that did not finish: did the refund happen?
    FINISH_CANCEL = "finish-cancel"  # refunded: restock and mark cancelled
    NONE = "none"


_PENDING_ACTIONS = {
    Step.CREATED: RecoveryAction.DISCARD,
    Step.RESERVING: RecoveryAction.ROLL_BACK,
    Step.RESERVED: RecoveryAction.ROLL_BACK,
    Step.CHARGING: RecoveryAction.RESOLVE_CHARGE,
    Step.CHARGED: RecoveryAction.COMPLETE,
    Step.COMMITTED: RecoveryAction.CONFIRM,
}
_FAILED_ACTIONS = {
    Step.RELEASING: RecoveryAction.RELEASE,
    Step.CHARGE_UNKNOWN: RecoveryAction.SETTLE_CHARGE,
    Step.VOIDING: RecoveryAction.VOID,
}
_CONFIRMED_ACTIONS = {
    Step.CANCELLING: RecoveryAction.RESOLVE_CANCEL,
    Step.CANCEL_REFUNDED: RecoveryAction.FINISH_CANCEL,
}
# Compensation of a failed order is no one else's job, so it starts at once; a pending checkout
# or a cancel may still be driven by its own request, so those wait for the saga timeout.
STALE_ONLY_STATUSES = frozenset({Status.PENDING, Status.CONFIRMED})
RECOVERABLE: dict[Status, frozenset[Step]] = {
    Status.PENDING: frozenset(_PENDING_ACTIONS),
    Status.FAILED: frozenset(_FAILED_ACTIONS),
    Status.CONFIRMED: frozenset(_CONFIRMED_ACTIONS),
}


def recovery_action(status: str, step: str, *, stale: bool) -> RecoveryAction:
    try:
        st, sp = Status(status), Step(step)
    except ValueError:
        return RecoveryAction.NONE
    if st in STALE_ONLY_STATUSES and not stale:
        return RecoveryAction.NONE
    table = {
        Status.PENDING: _PENDING_ACTIONS,
        Status.FAILED: _FAILED_ACTIONS,
        Status.CONFIRMED: _CONFIRMED_ACTIONS,
    }.get(st, {})
    return table.get(sp, RecoveryAction.NONE)


def is_stale(updated_at: datetime, now: datetime, timeout_seconds: float) -> bool:
    return now - updated_at >= timedelta(seconds=timeout_seconds)


def charge_settled(
    *, answered: bool, refundable: int, updated_at: datetime, now: datetime, settle_seconds: float
) -> bool:
    """A failed order with an unknown charge is closed once payment has been asked, nothing is
    left to refund, and long enough has passed that a late charge can no longer land."""
    return answered and refundable == 0 and is_stale(updated_at, now, settle_seconds)


def cancellable(status: str) -> bool:
    return status == Status.CONFIRMED


def checkout_outcome(status: int, slug: str | None) -> str:
    """The outcome a checkout's answer counts as (``shopkit.metrics.CHECKOUT_OUTCOMES``)."""
    if status == 201:
        return "confirmed"
    if status == 202:
        return "accepted"
    if status == PaymentDeclined.status:
        return "declined"
    if slug in {InsufficientStock.slug, UnknownProduct.slug}:
        return "out-of-stock"
    if slug == RequestInProgress.slug:
        return "replayed"
    if status == 503:
        return "unavailable"
    if 400 <= status < 500:
        return "rejected"
    return "error"
