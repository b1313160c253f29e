"""FastAPI dependencies shared by the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shopkit.app import Runtime
from shopkit.db import Database, database_unavailable


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    # Safe methods only read (HTTP semantics); they get the lock-free read session on SQLite.
    read_only = request.method in {"GET", "HEAD"}
    factory = db.read_sessionmaker if read_only else db.sessionmaker
    async with factory() as session:
        try:
            yield session
            # The one commit of the request, before the response is sent (scope="function"):
            # a failed commit is still reported to the client instead of a 2xx for lost data.
            await session.commit()
        except OperationalError as exc:
            await session.rollback()
            raise database_unavailable() from exc
        except BaseException:
            await session.rollback()
            raise


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
