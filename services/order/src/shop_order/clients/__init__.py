"""Typed clients of the services the order saga calls."""

from shop_order.clients.cart import CartClient
from shop_order.clients.payment import PaymentClient
from shop_order.clients.product import ProductClient
from shop_order.clients.user import UserClient

__all__ = ["CartClient", "PaymentClient", "ProductClient", "UserClient"]
