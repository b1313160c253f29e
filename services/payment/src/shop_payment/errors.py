"""Errors of the payment service, rendered as problem+json by the kit."""

from __future__ import annotations

from shopkit.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable


class InvalidPaymentToken(Unprocessable):
    slug = "invalid-payment-token"
    title = "The payment token is not valid"


class IdempotencyKeyReused(Unprocessable):
    slug = "idempotency-key-reused"
    title = "The idempotency key was already used with another request body"


class ChargeNotFound(NotFound):
    slug = "charge-not-found"
    title = "Charge not found"


class ChargeNotRefundable(Conflict):
    slug = "charge-not-refundable"
    title = "Only succeeded charges can be refunded"


class RefundExceedsCharge(Conflict):
    slug = "refund-exceeds-charge"
    title = "The refunds would exceed the charged amount"


class ProviderUnavailable(ServiceUnavailable):
    slug = "payment-provider-unavailable"
    title = "The payment provider is unavailable"
