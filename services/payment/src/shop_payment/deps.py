"""Dependencies of the payment routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shop_payment.provider import PaymentProvider


def get_provider(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.provider
    return provider


ProviderDep = Annotated[PaymentProvider, Depends(get_provider)]
