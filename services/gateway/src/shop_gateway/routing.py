"""Which upstream serves a public path, and which requests may go without a token.

Matching is by path segment prefix, so ``/api/v1/productsX`` is not the catalog. Anything not
listed here (``/internal/*``, ``/.well-known/*``, a service's ``/docs`` or ``/metrics``) is never
forwarded: the gateway answers 404 itself.
"""

from __future__ import annotations

API_PREFIX = "/api/v1/"

# First path segment after /api/v1/ -> upstream service.
SEGMENT_UPSTREAMS: dict[str, str] = {
    "auth": "user",
    "users": "user",
    "products": "product",
    "categories": "product",
    "cart": "cart",
    "orders": "order",
    "notifications": "notification",
}
# /api/v1/auth and /api/v1/users name collections only below them.
_NEEDS_SUBPATH = frozenset({"auth", "users"})

_PUBLIC_EXACT = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
    }
)
_PUBLIC_READ_SEGMENTS = frozenset({"products", "categories"})
_READ_METHODS = frozenset({"GET", "HEAD"})


def first_segment(path: str) -> str | None:
    """The segment after /api/v1/, or None for paths outside the public API."""
    if not path.startswith(API_PREFIX):
        return None
    rest = path[len(API_PREFIX) :]
    segment, slash, _ = rest.partition("/")
    if segment in _NEEDS_SUBPATH and not slash:
        return None
    return segment


def upstream_for(path: str) -> str | None:
    segment = first_segment(path)
    if segment is None:
        return None
    return SEGMENT_UPSTREAMS.get(segment)


def route_of(path: str) -> str:
    """A low-cardinality name of a routed path (for traces): its collection, or below it."""
    base = API_PREFIX + (first_segment(path) or "")
    return base if path in (base, base + "/") else base + "/*"


def is_public(method: str, path: str) -> bool:
    if method in _READ_METHODS:
        return first_segment(path) in _PUBLIC_READ_SEGMENTS
    return (method, path) in _PUBLIC_EXACT


def has_dot_segment(path: str) -> bool:
    """``.`` or ``..`` segments (also percent-encoded ones, the ASGI path is decoded) would let
    the upstream's URL normalisation reach a path other than the one routed here."""
    if "/." not in path:
        return False
    return any(segment in {".", ".."} for segment in path.split("/"))
