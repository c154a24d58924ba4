"""One error hierarchy for every service and one place mapping it to HTTP responses."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATEs of a server that is going away or not back yet: connection exceptions (class 08),
# admin/crash shutdown, cannot connect now, too many connections.
_UNAVAILABLE = ("57P01", "57P02", "57P03", "53300")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable for now (worth trying again)."""
    if isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", "") or "")
        return exc.connection_invalidated or state.startswith("08") or state in _UNAVAILABLE
    return False


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
    text = str(exc.orig or exc)
    if exc.connection_invalidated or "shutting down" in text or "terminating connection" in text:
        return await _database_unavailable_handler(request, exc)
    raise exc
