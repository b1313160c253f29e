"""Instant PromQL queries for one canary analysis."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from shop_operator.reconcile.analysis import Measurement


class QueryError(Exception):
    pass


def scalar_of(payload: Mapping[str, Any]) -> float | None:
    """The single value of an instant query answer; None for an empty result.

    A vector with several series (an override query without `sum`) is summed, which is what
    a request count means; NaN stays NaN for the verdict to interpret.
    """
    if payload.get("status") != "success":
        raise QueryError(str(payload.get("error") or "query failed"))
    data = payload.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    if kind in ("scalar", "string"):
        return float(result[1]) if result else None
    if kind != "vector":
        raise QueryError(f"unexpected result type {kind!r}")
    if not result:
        return None
    values = [float(item["value"][1]) for item in result]
    return math.fsum(values) if len(values) > 1 else values[0]


class Prometheus:
    """A shared httpx client; each analysis names the Prometheus it asks."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout))

    async def close(self) -> None:
        await self._client.aclose()

    async def query(self, base_url: str, promql: str) -> float | None:
        url = f"{base_url.rstrip('/')}/api/v1/query"
        try:
            response = await self._client.get(url, params={"query": promql})
        except httpx.HTTPError as exc:
            raise QueryError(f"{base_url} unreachable: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise QueryError(f"{base_url} answered {response.status_code}, not JSON") from exc
        if not isinstance(payload, dict):
            raise QueryError(f"{base_url} answered {response.status_code} with unexpected JSON")
        return scalar_of(payload)

    async def measure(self, base_url: str, queries: Mapping[str, str]) -> Measurement:
        """Run the analysis queries; any failure makes the whole measurement an error."""
        values: dict[str, float | None] = {}
        try:
            for key, promql in queries.items():
                values[key] = await self.query(base_url, promql)
        except QueryError as exc:
            return Measurement(error=str(exc))
        return Measurement(
            requests=values.get("requests"),
            error_ratio=values.get("errorRatio"),
            p95=values.get("p95"),
            p99=values.get("p99"),
        )
