"""FastAPI dependencies shared by the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shopkit.app import Runtime
from shopkit.db import Database


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    # Safe methods only read (HTTP semantics); they get the lock-free read session on SQLite.
    # The one commit of the request happens when the route returns, before the response is sent
    # (scope="function"): a failed commit is still reported instead of a 2xx for lost data.
    async with db.session(read_only=request.method in {"GET", "HEAD"}) as session:
        yield session


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
