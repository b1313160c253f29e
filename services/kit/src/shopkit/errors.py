"""Problem details (RFC 9457) for every error a service or the gateway answers."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError
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


class DatabaseUnavailable(ServiceUnavailable):
    """The database refused a write for now (locked, read-only, restarting): nothing of the
    request was stored, and the same request may be sent again after Retry-After."""

    slug = "database-unavailable"
    title = "Database unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(
            detail or "the database is temporarily unavailable", retry_after=retry_after
        )


# SQLite primary result codes of a condition that passes: BUSY, LOCKED, READONLY, IOERR, FULL
# and CANTOPEN (https://sqlite.org/rescode.html). Extended codes carry them in the low byte.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 8, 10, 13, 14})
# PostgreSQL SQLSTATEs of the same kind: lock_not_available (lock_timeout),
# read_only_sql_transaction, query_canceled (statement_timeout), serialization_failure,
# deadlock_detected, idle-in-transaction and transaction timeouts.
_PG_UNAVAILABLE = frozenset({"55P03", "25006", "57014", "40001", "40P01", "25P03", "25P04"})
# Whole classes: connection exceptions, insufficient resources, operator intervention
# (admin_shutdown, crash_shutdown, cannot_connect_now).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P")
_UNAVAILABLE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "readonly database",
    "read-only transaction",
    "unable to open database file",
    "disk i/o error",
)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether a database error is a temporary refusal (answer 503, retry later) rather than a
    bug or bad input. Nothing is written when it happens: the transaction is rolled back."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in _PG_UNAVAILABLE or sqlstate.startswith(_PG_UNAVAILABLE_CLASSES)
    message = str(orig).lower()
    return any(text in message for text in _UNAVAILABLE_MESSAGES)


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

    async def on_database_error(request: Request, exc: Exception) -> Response:
        # Sessions turn these into DatabaseUnavailable already; this catches the ones raised
        # outside a session (a query run on a bare connection), so a lock is never a 500.
        if is_database_unavailable(exc):
            log.warning("database unavailable: %s", exc.__class__.__name__)
            return DatabaseUnavailable().to_response()
        return await on_unexpected(request, exc)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "Internal error")

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)
