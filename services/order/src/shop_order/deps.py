"""Dependencies of the order routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shop_order.saga import OrderSaga


def get_saga(request: Request) -> OrderSaga:
    saga: OrderSaga = request.app.state.saga
    return saga


SagaDep = Annotated[OrderSaga, Depends(get_saga)]
