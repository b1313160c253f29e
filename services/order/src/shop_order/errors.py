"""Errors of the order service; the kit renders them as problem+json."""

from __future__ import annotations

from shopkit.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unprocessable,
)


class IdempotencyKeyRequired(BadRequest):
    slug = "idempotency-key-required"
    title = "An Idempotency-Key header is required"


class IdempotencyKeyInvalid(BadRequest):
    slug = "invalid-idempotency-key"
    title = "The Idempotency-Key header must be 1 to 255 printable ASCII characters"


class IdempotencyKeyReused(Unprocessable):
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was already used with another request body"


class RequestInProgress(Conflict):
    slug = "request-in-progress"
    title = "A request with this Idempotency-Key is still being processed"


class CustomerUnknown(Forbidden):
    slug = "customer-unknown"
    title = "The customer account does not exist"


class CartEmpty(BadRequest):
    slug = "cart-empty"
    title = "The cart is empty"


class InsufficientStock(Conflict):
    slug = "insufficient-stock"
    title = "Not enough stock for some products"


class UnknownProduct(Conflict):
    slug = "unknown-product"
    title = "Some products in the cart no longer exist"


class ReservationUnavailable(Conflict):
    slug = "reservation-unavailable"
    title = "The stock reservation for this order could not be made"


class PaymentDeclined(DomainError):
    status = 402
    slug = "card-declined"
    title = "The card was declined"


class InsufficientFunds(PaymentDeclined):
    slug = "insufficient-funds"
    title = "The card has insufficient funds"


class InvalidPaymentToken(Unprocessable):
    slug = "invalid-payment-token"
    title = "The payment token is not valid"


class PaymentUnavailable(ServiceUnavailable):
    slug = "payment-unavailable"
    title = "The payment service is unavailable; nothing was charged"


class InventoryUnavailable(ServiceUnavailable):
    slug = "inventory-unavailable"
    title = "The inventory service is unavailable; nothing was charged"


class CheckoutAbandoned(ServiceUnavailable):
    slug = "checkout-abandoned"
    title = "The checkout did not finish in time and was rolled back; nothing was charged"


class CheckoutAborted(Conflict):
    slug = "checkout-aborted"
    title = "The stock reservation was lost after payment; the charge was refunded"


class OrderNotFound(NotFound):
    slug = "order-not-found"
    title = "Order not found"


class NotCancellable(Conflict):
    slug = "not-cancellable"
    title = "The order cannot be cancelled in its current state"


class PaymentRejected(Unprocessable):
    slug = "payment-rejected"
    title = "The payment service refused the charge; nothing was charged"


class RefundUnavailable(ServiceUnavailable):
    slug = "payment-unavailable"
    title = "The payment service is unavailable; the order was not cancelled"


class CancelIncomplete(ServiceUnavailable):
    slug = "cancel-incomplete"
    title = "The order was refunded but the cancellation could not finish yet"
