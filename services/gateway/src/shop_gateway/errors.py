"""The gateway's own answers (problems, JSON, HTML) written straight to ASGI.

Every one carries the request id and the security headers, like proxied answers do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shopkit.errors import PROBLEM_BASE, PROBLEM_JSON
from starlette.types import Send

from shop_gateway.headers import NO_STORE, SECURITY_HEADERS

_PROBLEM_CONTENT_TYPE = PROBLEM_JSON.encode()


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        NO_STORE,
        (b"x-request-id", request_id),
    ]
    if headers:
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    if extra:
        raw.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    request_id: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send_bytes(
        send, status, body, b"application/json", request_id, headers=headers, extra=extra
    )


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    request_id: bytes,
    headers: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    problem: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        problem["detail"] = detail
    if fields:
        problem.update(fields)
    body = json.dumps(problem, separators=(",", ":")).encode()
    await send_bytes(
        send, status, body, _PROBLEM_CONTENT_TYPE, request_id, headers=headers, extra=extra
    )


async def send_too_large(
    send: Send, limit: int, request_id: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    await send_problem(
        send,
        413,
        "payload-too-large",
        "Request body too large",
        f"the body may be at most {limit} bytes",
        request_id=request_id,
        # The rest of the body is left unread, so the connection cannot carry another request.
        extra=[*extra, (b"connection", b"close")],
    )
