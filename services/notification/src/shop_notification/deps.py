"""Request parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="next_cursor of the previous page")
]
OrderFilter = Annotated[str | None, Query(min_length=1, max_length=64)]
