"""The names the load test reports its requests under: route templates, never raw paths, so a
run has one statistics row per route and journey step however many products and orders it
touches. A plain module: the suite reads it without importing locust, whose import patches the
standard library for gevent."""

from __future__ import annotations

Request = tuple[str, str]  # (method, name), as locust's statistics key them

REGISTER: Request = ("POST", "/api/v1/auth/register")
LOGIN: Request = ("POST", "/api/v1/auth/login")
CATEGORIES: Request = ("GET", "/api/v1/categories")
BROWSE: Request = ("GET", "/api/v1/products")
BROWSE_NEXT: Request = ("GET", "/api/v1/products?cursor={cursor}")
SEARCH: Request = ("GET", "/api/v1/products?q={q}")
PRODUCT: Request = ("GET", "/api/v1/products/{id}")
CART_SET: Request = ("PUT", "/api/v1/cart/items/{product_id}")
CART: Request = ("GET", "/api/v1/cart")
CART_CLEAR: Request = ("DELETE", "/api/v1/cart")
CHECKOUT: Request = ("POST", "/api/v1/orders")
ORDERS: Request = ("GET", "/api/v1/orders")
ORDER: Request = ("GET", "/api/v1/orders/{id}")

# Each shopper signs up once, in its first seconds; argon2 makes that slow on purpose, so the
# latency SLO leaves it out (its failures still count).
SIGN_UP: tuple[Request, ...] = (REGISTER, LOGIN)
# Every journey reaches these on a fresh platform within seconds.
EVERY_RUN: tuple[Request, ...] = (
    REGISTER,
    LOGIN,
    CATEGORIES,
    BROWSE,
    BROWSE_NEXT,
    SEARCH,
    PRODUCT,
    CART_SET,
    CART,
    CHECKOUT,
    ORDERS,
    ORDER,
)
# Only a sold-out checkout clears its cart.
SOMETIMES: tuple[Request, ...] = (CART_CLEAR,)
