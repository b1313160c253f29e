"""Business metrics: what the shop did, beside how its HTTP layer (:mod:`shopkit.observability`)
and its messaging (:mod:`shopkit.messaging`) performed.

Declared once here so that a name, its unit and its help text cannot drift apart between the
service that emits it and the dashboards and rules that read it (``k8s/observability/``). Each
service counts from its service layer, where the business decision is made, and primes the label
values it knows in advance when it starts: a quiet shop then exports zeros, and a rate over zeros
is 0 where a rate over no series would be no data at all, on dashboards and in alert rules alike.

Money is counted in the currency's minor unit (cents) and named so; ``currency`` is a label, so
amounts in different currencies are never added up by accident.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

# Outcomes of POST /api/v1/orders. A checkout counts once, with the answer its first request
# got; a repeat of the same idempotency key counts as "replayed", whatever it is answered.
CHECKOUT_OUTCOMES = (
    "confirmed",  # 201: charged, stock committed, order confirmed
    "accepted",  # 202: charged; the confirmation is left to the recovery loop
    "declined",  # 402: the payment provider declined the card
    "out-of-stock",  # 409: not enough stock, or a product no longer sold
    "rejected",  # other 4xx: empty cart, invalid payment token, unknown customer...
    "unavailable",  # 503: a dependency failed; nothing was charged
    "error",  # an unexpected failure (500)
    "replayed",  # a request with a key seen before: its stored answer, or "in progress"
)
CHECKOUTS = Counter(
    "shop_order_checkouts",
    "Checkout requests, by outcome: " + ", ".join(CHECKOUT_OUTCOMES) + ".",
    ["outcome"],
)
ORDER_REVENUE = Counter(
    "shop_order_revenue_cents",
    "Totals of confirmed orders, in cents of the currency, counted when the order is confirmed.",
    ["currency"],
)
ORDER_REFUNDS = Counter(
    "shop_order_refunded_cents",
    "Totals refunded by cancellations of confirmed orders, in cents of the currency.",
    ["currency"],
)
ORDER_CURRENCIES = ("USD",)

# The sandbox provider's decline codes; a real provider's codes are mapped onto these names.
DECLINE_REASONS = ("card-declined", "insufficient-funds")
PAYMENT_DECLINES = Counter(
    "shop_payment_declines",
    "Charges the payment provider declined, by reason (" + ", ".join(DECLINE_REASONS) + ").",
    ["reason"],
)

RESERVATIONS_EXPIRED = Counter(
    "shop_product_reservations_expired",
    "Stock reservations released by the expiry sweep because their order neither committed "
    "nor released them in time.",
)

DELIVERY_OUTCOMES = (
    "sent",  # the mail relay took the message
    "retried",  # the relay refused it; the event comes back for another attempt
    "failed",  # given up for good (out of attempts, or no such customer)
)
NOTIFICATION_DELIVERIES = Counter(
    "shop_notification_deliveries",
    "Attempts to send a notification, by outcome (" + ", ".join(DELIVERY_OUTCOMES) + ").",
    ["outcome"],
)


def prime(counter: Counter, values: Iterable[str]) -> None:
    """Create the series of a one-label counter for every value known in advance, at 0."""
    for value in values:
        counter.labels(value)
