"""The merged public OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import httpx
from shop_gateway.openapi import merge
from shopkit.testing import free_port


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    text = json.dumps(node)
    marker = '"$ref": "'
    start = text.find(marker)
    while start != -1:
        end = text.find('"', start + len(marker))
        found.add(text[start + len(marker) : end])
        start = text.find(marker, end)
    return found


def _doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _get(ref: str) -> dict[str, Any]:
    return {
        "get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": ref}}}}}}
    }


def test_merge_keeps_only_routed_public_paths_and_their_schemas() -> None:
    product = _doc(
        {
            "/api/v1/products": _get("#/components/schemas/ProductPage"),
            "/api/v1/cart": _get("#/components/schemas/Stray"),  # not product's to publish
            "/internal/stock-audit": _get("#/components/schemas/Audit"),
            "/livez": {"get": {"responses": {}}},
        },
        {
            "ProductPage": {
                "type": "object",
                "properties": {"items": {"items": {"$ref": "#/components/schemas/ProductRead"}}},
            },
            "ProductRead": {"type": "object"},
            "Audit": {"type": "object"},
            "Stray": {"type": "object"},
            "Unused": {"type": "object"},
        },
    )
    merged = merge({"product": product, "cart": None})
    assert list(merged["paths"]) == ["/api/v1/products"]
    assert sorted(merged["components"]["schemas"]) == ["ProductPage", "ProductRead"]
    assert merged["x-missing-services"] == ["cart"]


def test_merge_splits_colliding_names_and_shares_identical_ones() -> None:
    money = {"type": "object", "properties": {"amount": {"type": "integer"}}}
    cart = _doc(
        {"/api/v1/cart": _get("#/components/schemas/Page")},
        {
            "Page": {
                "type": "object",
                "properties": {
                    "total": {"$ref": "#/components/schemas/Money"},
                    "line": {"$ref": "#/components/schemas/Line"},
                },
            },
            "Line": {"type": "object", "title": "cart line"},
            "Money": money,
        },
    )
    order = _doc(
        {"/api/v1/orders": _get("#/components/schemas/Page")},
        {
            "Page": {
                "type": "object",
                "properties": {
                    "total": {"$ref": "#/components/schemas/Money"},
                    "line": {"$ref": "#/components/schemas/Line"},
                },
            },
            "Line": {"type": "object", "title": "order line"},
            "Money": money,
        },
    )
    merged = merge({"cart": cart, "order": order})
    schemas = merged["components"]["schemas"]
    assert schemas["Money"] == money
    assert schemas["cart_Line"]["title"] == "cart line"
    assert schemas["order_Line"]["title"] == "order line"
    # Page looks the same in both, but points at a Line that differs: it must be split too.
    assert schemas["cart_Page"]["properties"]["line"]["$ref"] == "#/components/schemas/cart_Line"
    assert schemas["order_Page"]["properties"]["line"]["$ref"] == "#/components/schemas/order_Line"
    assert "Page" not in schemas and "Line" not in schemas
    cart_ref = _refs(merged["paths"]["/api/v1/cart"])
    assert cart_ref == {"#/components/schemas/cart_Page"}
    # Every reference resolves inside the merged document.
    for ref in _refs(merged):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert merged["x-missing-services"] == []


async def test_served_document_merges_live_services_and_names_missing_ones(
    gateway_factory: Any, upstreams: dict[str, Any]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with gateway_factory(notification_url=closed) as client:
        response = await client.get("/api/v1/openapi.json")
        again = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert again.json() == document
    assert document["x-missing-services"] == ["notification"]
    assert sorted(document["paths"]) == [
        "/api/v1/cart",
        "/api/v1/orders",
        "/api/v1/products",
        "/api/v1/users/me",
    ]
    assert all(path.startswith("/api/v1/") for path in document["paths"])
    schemas = document["components"]["schemas"]
    assert "Secret" not in schemas and not any(name.endswith("_Secret") for name in schemas)
    assert "Money" in schemas
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_document_needs_no_token(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["x-missing-services"] == []
