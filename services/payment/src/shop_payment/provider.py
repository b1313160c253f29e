"""The card processor behind an interface, and the sandbox implementation with test tokens."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from shopkit.schemas import Money

from shop_payment.errors import InvalidPaymentToken, ProviderUnavailable
from shop_payment.settings import PaymentSettings

DeclineCode = Literal["card-declined", "insufficient-funds"]


@dataclass(frozen=True)
class ChargeOutcome:
    status: Literal["succeeded", "declined"]
    provider_ref: str
    decline_code: DeclineCode | None = None


class PaymentProvider(Protocol):
    async def charge(self, token: str, amount: Money, *, idempotency_key: str) -> ChargeOutcome:
        """Charge the card behind ``token``; raises InvalidPaymentToken for unknown tokens."""
        ...

    async def refund(self, provider_charge_ref: str, amount: Money) -> str:
        """Refund part or all of a charge; returns the provider's refund reference."""
        ...


_SANDBOX_TOKENS: dict[str, DeclineCode | None] = {
    "tok_visa": None,
    "tok_mastercard": None,
    "tok_chargeDeclined": "card-declined",
    "tok_chargeDeclinedInsufficientFunds": "insufficient-funds",
}


class SandboxProvider:
    """Answers from the token alone, like the test mode of a real processor."""

    def __init__(self, *, error_rate: float = 0.0, rng: random.Random | None = None) -> None:
        self._error_rate = error_rate
        self._rng = rng or random.Random()

    async def charge(self, token: str, amount: Money, *, idempotency_key: str) -> ChargeOutcome:
        if self._error_rate and self._rng.random() < self._error_rate:
            raise ProviderUnavailable("the sandbox provider failed (injected fault)")
        if token not in _SANDBOX_TOKENS:
            raise InvalidPaymentToken(f"unknown payment token {token[:64]!r}")
        decline = _SANDBOX_TOKENS[token]
        ref = f"ch_sandbox_{uuid.uuid4().hex}"
        if decline is None:
            return ChargeOutcome(status="succeeded", provider_ref=ref)
        return ChargeOutcome(status="declined", provider_ref=ref, decline_code=decline)

    async def refund(self, provider_charge_ref: str, amount: Money) -> str:
        return f"re_sandbox_{uuid.uuid4().hex}"


def build_provider(settings: PaymentSettings) -> PaymentProvider:
    # The setting is a Literal of the implemented providers, so an unknown name fails at start.
    return SandboxProvider(error_rate=settings.fault_error_rate)
