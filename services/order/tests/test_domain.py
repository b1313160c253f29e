"""The saga's decision functions, without any I/O."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from shop_order import domain
from shop_order.domain import (
    Admission,
    ChargeFinding,
    ChargeView,
    RecoveryAction,
    Status,
    Step,
)
from shop_order.errors import (
    IdempotencyKeyInvalid,
    IdempotencyKeyRequired,
    InsufficientFunds,
    InsufficientStock,
    PaymentDeclined,
    ReservationUnavailable,
    UnknownProduct,
)
from shop_order.schemas import OrderCreate

ADDRESS = {
    "name": "Ada",
    "line1": "1 Crumb St",
    "city": "Bakersfield",
    "postal_code": "93301",
    "country": "US",
}


def body(**changes: object) -> OrderCreate:
    doc: dict[str, object] = {"payment_token": "tok_visa", "shipping_address": dict(ADDRESS)}
    doc.update(changes)
    return OrderCreate.model_validate(doc)


def test_fingerprint_ignores_key_order_and_surrounding_whitespace() -> None:
    reordered = OrderCreate.model_validate(
        {
            "shipping_address": dict(reversed(list(ADDRESS.items()))),
            "payment_token": " tok_visa ",
        }
    )
    assert domain.request_fingerprint(body()) == domain.request_fingerprint(reordered)
    assert len(domain.request_fingerprint(body())) == 64


def test_fingerprint_changes_with_any_field() -> None:
    base = domain.request_fingerprint(body())
    assert domain.request_fingerprint(body(payment_token="tok_mastercard")) != base
    other_city = {**ADDRESS, "city": "Fresno"}
    assert domain.request_fingerprint(body(shipping_address=other_city)) != base


@pytest.mark.parametrize("key", ["a", "order-1", "x" * 255, "with space", "~!@#$%^&*()"])
def test_valid_idempotency_keys(key: str) -> None:
    assert domain.check_idempotency_key(key) == key


def test_missing_idempotency_key() -> None:
    with pytest.raises(IdempotencyKeyRequired):
        domain.check_idempotency_key(None)
    with pytest.raises(IdempotencyKeyRequired):
        domain.check_idempotency_key("")


@pytest.mark.parametrize("key", ["x" * 256, "tab\there", "caf\u00e9", "new\nline", "\x7f"])
def test_invalid_idempotency_keys(key: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid):
        domain.check_idempotency_key(key)


def test_admission() -> None:
    assert domain.admission("a", True, "a") is Admission.REPLAY
    assert domain.admission("a", False, "a") is Admission.IN_PROGRESS
    # A different body is refused even while the first request is still running.
    assert domain.admission("a", False, "b") is Admission.MISMATCH
    assert domain.admission("a", True, "b") is Admission.MISMATCH


def test_transitions_follow_the_checkout() -> None:
    path = [
        (Status.PENDING, Step.CREATED),
        (Status.PENDING, Step.RESERVING),
        (Status.PENDING, Step.RESERVED),
        (Status.PENDING, Step.CHARGING),
        (Status.PENDING, Step.CHARGED),
        (Status.PENDING, Step.COMMITTED),
        (Status.CONFIRMED, Step.CONFIRMED),
        (Status.CONFIRMED, Step.CANCELLING),
        (Status.CONFIRMED, Step.CANCEL_REFUNDED),
        (Status.CANCELLED, Step.CANCELLED),
    ]
    for current, target in itertools.pairwise(path):
        assert domain.can_transition(current, target), (current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        # a charged order must never be failed as if nothing happened
        ((Status.PENDING, Step.CHARGED), (Status.FAILED, Step.RELEASED)),
        ((Status.PENDING, Step.CHARGED), (Status.FAILED, Step.RELEASING)),
        # nothing confirms without committing the stock first
        ((Status.PENDING, Step.CHARGED), (Status.CONFIRMED, Step.CONFIRMED)),
        # terminal states stay terminal
        ((Status.CANCELLED, Step.CANCELLED), (Status.CONFIRMED, Step.CONFIRMED)),
        ((Status.FAILED, Step.RELEASED), (Status.PENDING, Step.RESERVING)),
        ((Status.FAILED, Step.COMPENSATED), (Status.FAILED, Step.CHARGE_UNKNOWN)),
        # a cancellation needs the refund first
        ((Status.CONFIRMED, Step.CANCELLING), (Status.CANCELLED, Step.CANCELLED)),
        (("weird", "step"), (Status.FAILED, Step.RELEASED)),
    ],
)
def test_forbidden_transitions(current: tuple[str, str], target: tuple[str, str]) -> None:
    assert not domain.can_transition(current, target)


def test_every_transition_target_is_a_known_state() -> None:
    for targets in domain.TRANSITIONS.values():
        for status, step in targets:
            assert isinstance(status, Status)
            assert isinstance(step, Step)


def test_merge_lines_and_total() -> None:
    assert domain.merge_lines([("a", 1), ("b", 2), ("a", 3)]) == [("a", 4), ("b", 2)]
    assert domain.order_total([(2, 350), (1, 1000)]) == 1700
    assert domain.order_total([]) == 0


def view(status: str, amount: int = 500, refunded: int = 0, code: str | None = None) -> ChargeView:
    return ChargeView(
        id=f"ch-{status}", status=status, decline_code=code, amount=amount, refunded=refunded
    )


def test_classify_charges() -> None:
    assert domain.classify_charges([]) == (ChargeFinding.NONE, None)
    declined = view("declined", code="card-declined")
    ok = view("succeeded")
    assert domain.classify_charges([declined]) == (ChargeFinding.DECLINED, declined)
    assert domain.classify_charges([declined, ok]) == (ChargeFinding.SUCCEEDED, ok)


def test_refundable() -> None:
    assert view("succeeded", 500, 0).refundable == 500
    assert view("succeeded", 500, 200).refundable == 300
    assert view("succeeded", 500, 500).refundable == 0
    assert view("declined", 500, 0).refundable == 0


def test_decline_errors() -> None:
    funds = domain.decline_error("insufficient-funds", "o1")
    assert isinstance(funds, InsufficientFunds)
    assert funds.status == 402
    assert funds.to_body()["type"].endswith("insufficient-funds")
    assert funds.to_body()["order_id"] == "o1"
    card = domain.decline_error("card-declined", "o1")
    assert type(card) is PaymentDeclined
    assert card.to_body()["type"].endswith("card-declined")
    assert domain.decline_error(None, "o1").to_body()["type"].endswith("card-declined")


def test_reservation_refusals() -> None:
    short = [{"product_id": "p1", "name": "Rye loaf", "requested": 5, "available": 2}]
    error, step = domain.reservation_refusal("insufficient-stock", short, None, "o1")
    assert isinstance(error, InsufficientStock)
    assert step is Step.REJECTED
    assert error.to_body()["products"] == short
    assert "Rye loaf" in (error.detail or "")
    error, step = domain.reservation_refusal("unknown-product", ["p9"], None, "o1")
    assert isinstance(error, UnknownProduct)
    assert step is Step.REJECTED
    error, step = domain.reservation_refusal("mismatch", [], "other items", "o1")
    assert isinstance(error, ReservationUnavailable)
    assert step is Step.RELEASING  # something may be held under this order id
    _, step = domain.reservation_refusal("closed", [], None, "o1")
    assert step is Step.REJECTED


def test_payment_keys_are_derived_from_the_order() -> None:
    assert domain.charge_key("o1") == "order-o1-charge"
    assert domain.refund_key("o1") == "order-o1-refund"
    assert domain.void_key("o1") == "order-o1-charge-void"


@pytest.mark.parametrize(
    ("status", "step", "stale", "action"),
    [
        ("pending", "created", True, RecoveryAction.DISCARD),
        ("pending", "reserving", True, RecoveryAction.ROLL_BACK),
        ("pending", "reserved", True, RecoveryAction.ROLL_BACK),
        ("pending", "charging", True, RecoveryAction.RESOLVE_CHARGE),
        ("pending", "charged", True, RecoveryAction.COMPLETE),
        ("pending", "committed", True, RecoveryAction.CONFIRM),
        # a fresh pending order belongs to its request
        ("pending", "charging", False, RecoveryAction.NONE),
        ("failed", "releasing", False, RecoveryAction.RELEASE),
        ("failed", "charge-unknown", False, RecoveryAction.SETTLE_CHARGE),
        ("failed", "voiding", False, RecoveryAction.VOID),
        ("failed", "released", True, RecoveryAction.NONE),
        ("failed", "rejected", True, RecoveryAction.NONE),
        ("confirmed", "confirmed", True, RecoveryAction.NONE),
        ("confirmed", "cancelling", True, RecoveryAction.RESOLVE_CANCEL),
        ("confirmed", "cancelling", False, RecoveryAction.NONE),
        ("confirmed", "cancel-refunded", True, RecoveryAction.FINISH_CANCEL),
        ("cancelled", "cancelled", True, RecoveryAction.NONE),
        ("bogus", "created", True, RecoveryAction.NONE),
    ],
)
def test_recovery_action(status: str, step: str, stale: bool, action: RecoveryAction) -> None:
    assert domain.recovery_action(status, step, stale=stale) is action


def test_recoverable_steps_all_have_an_action() -> None:
    for status, steps in domain.RECOVERABLE.items():
        for step in steps:
            assert domain.recovery_action(status, step, stale=True) is not RecoveryAction.NONE


def test_staleness_and_settling() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert domain.is_stale(now - timedelta(seconds=31), now, 30)
    assert not domain.is_stale(now - timedelta(seconds=5), now, 30)
    old = now - timedelta(seconds=200)
    assert domain.charge_settled(
        answered=True, refundable=0, updated_at=old, now=now, settle_seconds=120
    )
    assert not domain.charge_settled(
        answered=True, refundable=100, updated_at=old, now=now, settle_seconds=120
    )
    assert not domain.charge_settled(
        answered=False, refundable=0, updated_at=old, now=now, settle_seconds=120
    )
    assert not domain.charge_settled(
        answered=True, refundable=0, updated_at=now, now=now, settle_seconds=120
    )


def test_only_confirmed_orders_are_cancellable() -> None:
    assert domain.cancellable("confirmed")
    for status in ("pending", "failed", "cancelled"):
        assert not domain.cancellable(status)
