"""/livez, /readyz and /metrics, the same on every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from shopkit.errors import problem
from shopkit.observability import metrics_payload

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(include_in_schema=False)
# Apart, so that a service with metrics switched off has no /metrics at all (404).
metrics_router = APIRouter(include_in_schema=False)


async def run_checks(checks: dict[str, Check]) -> dict[str, str]:
    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            return f"failing: {type(exc).__name__}: {exc}"[:200]
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


@router.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    checks: dict[str, Check] = request.app.state.checks
    results = await run_checks(checks)
    failing = sorted(name for name, result in results.items() if result != "ok")
    if failing:
        return problem(
            503,
            "not-ready",
            "Not ready",
            f"failing: {', '.join(failing)}",
            extra={"checks": results},
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ok", "checks": results})


@metrics_router.get("/metrics")
async def metrics() -> Response:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
