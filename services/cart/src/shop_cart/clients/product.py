"""The product service, as the cart sees it: names and prices by id."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel
from shopkit.http import PeerUnavailable, ServiceClient
from shopkit.schemas import Money

LOOKUP_LIMIT = 100


class ProductIdsRejected(Exception):
    """The catalog refused the ids as malformed, so none of them can name a product."""


class CatalogProduct(BaseModel):
    id: str
    name: str
    price: Money


class LookupAnswer(BaseModel):
    items: list[CatalogProduct]


class ProductClient(ServiceClient):
    peer = "product"

    async def lookup(self, ids: Iterable[str]) -> dict[str, CatalogProduct]:
        """Products by id in one call; ids the catalog does not know are missing from the map."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        if len(wanted) > LOOKUP_LIMIT:
            raise ValueError(f"at most {LOOKUP_LIMIT} ids per lookup")
        # A read sent as POST (the id list may be long): safe to retry.
        resp = await self.request(
            "POST", "/internal/products/lookup", json_body={"ids": wanted}, idempotent=True
        )
        if resp.status == 422:
            raise ProductIdsRejected(f"the catalog rejected the ids {wanted!r}"[:200])
        if resp.status != 200:
            raise PeerUnavailable(self.peer, f"lookup answered {resp.status}")
        answer = resp.model(LookupAnswer, self.peer)
        return {p.id: p for p in answer.items}
