"""What a database error means, by SQLSTATE and exception type (never by a message's wording):
unavailable for now (`is_unavailable`: every retry and every 503 asks this), or a value the
database refused (`refused_value`: the request's fault)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATEs of a server going away or not back yet, besides class 08 (connection exception):
# admin_shutdown, crash_shutdown, cannot_connect_now (starting or shutting down), and
# too_many_connections.
_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE the driver reported for `exc` (wrapped by SQLAlchemy or not), or ""."""
    driver = exc.orig if isinstance(exc, DBAPIError) else exc
    return str(getattr(driver, "sqlstate", "") or "")


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable for now (worth trying again): a lost or
    refused connection, a timeout, or a SQLSTATE of class 08 or in 57P01-57P03 / 53300."""
    if isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = sqlstate(exc)
    return state.startswith("08") or state in _UNAVAILABLE


def refused_value(exc: BaseException) -> str | None:
    """PostgreSQL's reason when it refused a value (SQLSTATE class 22, "data exception": a NUL
    in a string, a number out of range, a bad date), found along a short cause chain; else None.

    Such a refusal is the request's fault: the same values would be refused again, so callers
    answer 422 rather than a retryable 500.
    """
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain: an action's error wraps the driver's
        if seen is None:
            return None
        if sqlstate(seen).startswith("22"):
            driver = seen.orig if isinstance(seen, DBAPIError) else seen
            return str(driver).strip().splitlines()[0][:300]
        seen = seen.__cause__ or seen.__context__
    return None
