"""The user service's internal API: where a customer's email address comes from."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from shopkit.http import PeerUnavailable, ServiceClient


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    # Goes into a To: header: one address, no whitespace (so no header injection).
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^\s@<>,;]+@[^\s@<>,;]+$")
    name: str = ""


class UserClient(ServiceClient):
    peer = "user"

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The account, or None when the user service does not know the id."""
        resp = await self.request("GET", f"/internal/users/{quote(user_id, safe='')}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise PeerUnavailable(self.peer, f"answered {resp.status}")
        return resp.model(UserRecord, self.peer)
