"""One error hierarchy for every service and one place mapping it to HTTP responses."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db.errors import is_unavailable, refused_value


class ErrorBody(BaseModel):
    """The one body of every error answer (4xx and 5xx) the services send."""

    error: str = Field(description="a stable code, e.g. `not_found`, `validation_error`")
    message: str = Field(description="what went wrong, for a person")
    details: Any = Field(
        None, description="more about it; for `validation_error` a list of {field, message, type}"
    )
    retryable: bool = Field(description="whether the same request may succeed if sent again")


_MEANINGS = {
    401: "no bearer token, or one that is not accepted",
    403: "the key lacks the scope this route needs",
    404: "no such resource",
    405: "method not allowed",
    409: "conflicts with the current state",
    413: "the request body is over the size limit",
    422: "invalid request; `details` names each field",
    503: "a dependency (the database) is unavailable; retry",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route answering with these error statuses, all as `ErrorBody`."""
    return {s: {"model": ErrorBody, "description": _MEANINGS[s]} for s in statuses}


class AppError(Exception):
    """A domain error with a stable code; `retryable` tells callers whether to try again."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retryable = retryable
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON body clients see."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        body["retryable"] = self.retryable
        return body


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"


async def _app_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _request_validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    fields = ", ".join(e["field"] or "body" for e in errors)
    return JSONResponse(
        {
            "error": "validation_error",
            "message": f"invalid request: {fields}",
            "details": errors,
            "retryable": False,
        },
        status_code=422,
    )


async def _http_exception_handler(_: Request, exc: Exception) -> JSONResponse:
    # Starlette's own answers (no such route, method not allowed) in the same body as ours.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's 400 for a body it cannot decode (not UTF-8): bad input, a 422 like the rest.
        return JSONResponse(
            {
                "error": "validation_error",
                "message": f"invalid request: body ({exc.detail})",
                "details": [{"field": "", "message": str(exc.detail), "type": "parse_error"}],
                "retryable": False,
            },
            status_code=422,
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "message": str(exc.detail), "retryable": False},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _database_unavailable_handler(_: Request, exc: Exception) -> JSONResponse:
    # The database restarting or unreachable is a moment to retry, not a server bug: 503.
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return JSONResponse(
        {
            "error": "database_unavailable",
            "message": f"the database is unavailable ({reason}); nothing was changed, retry",
            "retryable": True,
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


def register_exception_handlers(app: FastAPI) -> None:
    """Map AppError and request validation errors to `{"error", "message"}` JSON."""
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    for lost in (
        OperationalError,
        InterfaceError,
        ConnectionError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
    ):
        app.add_exception_handler(lost, _database_unavailable_handler)
    app.add_exception_handler(DBAPIError, _dbapi_error_handler)


async def _dbapi_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if is_unavailable(exc):
        return await _database_unavailable_handler(request, exc)
    reason = refused_value(exc)
    if reason is not None:
        # A value the database refuses (a NUL in a query parameter, say) is the request's fault
        # whichever route carried it; the transaction it broke is rolled back with it.
        refused = ValidationFailed(
            f"the database refused a value of the request ({reason})", code="value_refused"
        )
        return await _app_error_handler(request, refused)
    raise exc
