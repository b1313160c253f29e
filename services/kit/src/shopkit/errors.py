"""Problem details (RFC 9457) for every error a service or the gateway answers."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://sweetslice.dev/problems/"

log = logging.getLogger("shopkit.errors")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    # Extension members never overwrite the standard ones (RFC 9457 section 3.2).
    body: dict[str, Any] = dict(extra or {})
    body.update(type=PROBLEM_BASE + slug, title=title, status=status)
    if detail:
        body["detail"] = detail
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


class DomainError(Exception):
    """An error the client can act on; subclasses set status, slug and title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def to_response(self) -> ProblemResponse:
        return ProblemResponse(self.to_body(), status_code=self.status, headers=self.headers)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.extra)
        body.update(type=PROBLEM_BASE + self.slug, title=self.title, status=self.status)
        if self.detail:
            body["detail"] = self.detail
        return body


class BadRequest(DomainError):
    pass


class Unauthorized(DomainError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="sweetslice"'})


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Unprocessable(DomainError):
    status = 422
    slug = "validation-error"
    title = "Request is not valid"


class PayloadTooLarge(DomainError):
    status = 413
    slug = "payload-too-large"
    title = "Request body is too large"


class ServiceUnavailable(DomainError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int = 1,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, extra=extra, headers={"Retry-After": str(retry_after)})


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Reduce pydantic's errors to loc and msg: echoing input back can leak or bloat answers."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors]


def install_problem_handlers(app: FastAPI) -> None:
    async def on_domain_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return exc.to_response()

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem(
            422,
            "validation-error",
            "Request is not valid",
            extra={"errors": validation_errors(exc.errors())},
        )

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(
            exc.status_code,
            slug,
            str(exc.detail),
            headers=exc.headers,
        )

    async def on_data_error(_: Request, exc: Exception) -> Response:
        # The database refused a value the schema let through (a NUL byte in PostgreSQL text,
        # a number out of a column's range): the client's input, so 422, never 500.
        return problem(422, "invalid-value", "A value in the request cannot be stored")

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "Internal error")

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(Exception, on_unexpected)
