"""Client of the user service's internal API."""

from __future__ import annotations

from pydantic import BaseModel
from shopkit.http import ServiceClient

from shop_order.clients.common import segment, unexpected


class PeerUser(BaseModel):
    id: str
    email: str
    name: str
    roles: list[str] = []


class UserClient(ServiceClient):
    peer = "user"

    async def get_user(self, user_id: str) -> PeerUser | None:
        resp = await self.request("GET", f"/internal/users/{segment(user_id)}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise unexpected(self.peer, resp)
        return resp.model(PeerUser, self.peer)
