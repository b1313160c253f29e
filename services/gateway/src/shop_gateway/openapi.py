"""One OpenAPI document for the public API, merged from the services' own documents.

Only paths the gateway actually routes to the service that documents them are kept, with the
components they reference (transitively); nothing internal leaks into the public document.
Component names that two services define differently are prefixed with the service name, and
every reference is rewritten to match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from shopkit.discovery import Discovery

from shop_gateway.routing import upstream_for

log = logging.getLogger("shop_gateway.openapi")

REF_PREFIX = "#/components/"
TITLE = "Sweet Slice API"
VERSION = "1.0.0"
# A document with a service missing is kept only briefly, so it heals soon after the service does.
PARTIAL_TTL_SECONDS = 5.0
FETCH_TIMEOUT_SECONDS = 3.0

Key = tuple[str, str]  # (components section, name)

DOCS_HTML = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sweet Slice API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui"});
</script>
</body>
</html>
"""


def _refs(node: Any, found: set[Key]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            section, _, name = ref[len(REF_PREFIX) :].partition("/")
            found.add((section, name))
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _component(components: Mapping[str, Any], key: Key) -> Any:
    section = components.get(key[0])
    if isinstance(section, Mapping):
        return section.get(key[1])
    return None


def _closure(roots: Any, components: Mapping[str, Any]) -> dict[Key, Any]:
    """Every component reachable from ``roots``; dangling references are left out."""
    pending: set[Key] = set()
    _refs(roots, pending)
    found: dict[Key, Any] = {}
    while pending:
        key = pending.pop()
        if key in found:
            continue
        value = _component(components, key)
        if value is None:
            continue
        found[key] = value
        more: set[Key] = set()
        _refs(value, more)
        pending |= more - found.keys()
    return found


def _rewrite(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        out = {key: _rewrite(value, renames) for key, value in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref in renames:
            out["$ref"] = renames[ref]
        return out
    if isinstance(node, list):
        return [_rewrite(value, renames) for value in node]
    return node


def _kept_paths(service: str, document: Mapping[str, Any]) -> dict[str, Any]:
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return {}
    return {
        path: item
        for path, item in paths.items()
        if isinstance(path, str) and upstream_for(path) == service
    }


def _colliding(needed: Mapping[str, Mapping[Key, Any]]) -> set[Key]:
    """Keys that cannot be shared: defined differently by two services, or referring to one."""
    variants: dict[Key, list[Any]] = {}
    for components in needed.values():
        for key, value in components.items():
            variants.setdefault(key, []).append(value)
    colliding = {key for key, values in variants.items() if any(v != values[0] for v in values[1:])}
    # A shared component pointing at a split one would point at two things: split it too.
    changed = True
    while changed:
        changed = False
        for components in needed.values():
            for key, value in components.items():
                if key in colliding:
                    continue
                refs: set[Key] = set()
                _refs(value, refs)
                if refs & colliding:
                    colliding.add(key)
                    changed = True
    return colliding


def _unique(name: str, taken: set[str]) -> str:
    candidate = name
    n = 2
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    return candidate


def merge(documents: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Merge per-service documents (None for a service that could not be fetched)."""
    missing = sorted(name for name, doc in documents.items() if doc is None)
    kept: dict[str, dict[str, Any]] = {}
    needed: dict[str, dict[Key, Any]] = {}
    for service, document in documents.items():
        if document is None:
            continue
        kept[service] = _kept_paths(service, document)
        components = document.get("components")
        needed[service] = _closure(
            kept[service], components if isinstance(components, Mapping) else {}
        )

    colliding = _colliding(needed)
    taken: dict[str, set[str]] = {}
    for components in needed.values():
        for section, name in components:
            taken.setdefault(section, set()).add(name)
    renames: dict[str, dict[str, str]] = {}
    for service, components in needed.items():
        renames[service] = {}
        for section, name in components:
            if (section, name) in colliding:
                new = _unique(f"{service}_{name}", taken[section])
                taken[section].add(new)
                old_ref = f"{REF_PREFIX}{section}/{name}"
                renames[service][old_ref] = f"{REF_PREFIX}{section}/{new}"

    paths: dict[str, Any] = {}
    merged_components: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    tags: dict[str, Any] = {}
    for service in sorted(kept):
        rename = renames[service]
        for path, item in sorted(kept[service].items()):
            rewritten = _rewrite(item, rename)
            _dedupe_operation_ids(service, rewritten, operation_ids)
            paths[path] = rewritten
        for (section, name), value in needed[service].items():
            ref = rename.get(f"{REF_PREFIX}{section}/{name}", f"{REF_PREFIX}{section}/{name}")
            new_name = ref.rpartition("/")[2]
            merged_components.setdefault(section, {})[new_name] = _rewrite(value, rename)
        document = documents[service]
        assert document is not None
        for tag in document.get("tags", []) or []:
            if isinstance(tag, Mapping) and isinstance(tag.get("name"), str):
                tags.setdefault(tag["name"], dict(tag))

    merged: dict[str, Any] = {
        "openapi": _openapi_version(documents),
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "The public API of Sweet Slice, served by its gateway.",
        },
        "paths": paths,
        "components": {
            section: dict(sorted(values.items()))
            for section, values in sorted(merged_components.items())
        },
        "x-missing-services": missing,
    }
    if tags:
        merged["tags"] = list(tags.values())
    return merged


def _dedupe_operation_ids(service: str, path_item: Any, seen: set[str]) -> None:
    if not isinstance(path_item, dict):
        return
    for operation in path_item.values():
        if not isinstance(operation, dict):
            continue
        op_id = operation.get("operationId")
        if not isinstance(op_id, str):
            continue
        if op_id in seen:
            op_id = _unique(f"{service}_{op_id}", seen)
            operation["operationId"] = op_id
        seen.add(op_id)


def _openapi_version(documents: Mapping[str, Mapping[str, Any] | None]) -> str:
    for document in documents.values():
        if document is not None and isinstance(document.get("openapi"), str):
            return str(document["openapi"])
    return "3.1.0"


class OpenApiAggregator:
    """Fetches and merges the services' documents, caching the result for a short while."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        discovery: Discovery,
        services: Iterable[str],
        *,
        ttl: float,
    ) -> None:
        self._session = session
        self._discovery = discovery
        self._services = tuple(services)
        self._ttl = ttl
        self._body: bytes | None = None
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    async def document(self) -> bytes:
        if self._body is not None and time.monotonic() < self._expires:
            return self._body
        async with self._lock:
            if self._body is not None and time.monotonic() < self._expires:
                return self._body
            fetched = await asyncio.gather(*(self._fetch(s) for s in self._services))
            documents = dict(zip(self._services, fetched, strict=True))
            merged = merge(documents)
            body = json.dumps(merged, separators=(",", ":")).encode()
            ttl = (
                self._ttl
                if not merged["x-missing-services"]
                else min(self._ttl, PARTIAL_TTL_SECONDS)
            )
            self._body = body
            self._expires = time.monotonic() + ttl
            return body

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            base = await self._discovery.resolve(service)
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            async with self._session.get(base + "/openapi.json", timeout=timeout) as resp:
                if resp.status != 200:
                    log.warning("openapi of %s answered %d", service, resp.status)
                    return None
                document = json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError, LookupError, ValueError) as exc:
            log.warning("openapi of %s unavailable: %s", service, type(exc).__name__)
            return None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            log.warning("openapi of %s is not an OpenAPI document", service)
            return None
        return document
