"""Ending a REST page walk honestly: the announced total, the user's page cap, loop guards.

A walk ends when the pagination style's own signal says so (no next link, no cursor, a short
or empty page). Nothing else ends it silently:

- `max_pages` exists only when the user sets it; reaching it with pages left is the error
  `page_cap_reached`, or an explicit `partial` outcome when the user asked for that.
- A page that points back to one already requested, or a page/offset walk whose page repeats
  the previous one record for record, is the error `pagination_loop` (the bound on a walk that
  would never end, since there is no page cap by default).
- When the source announced more records than the walk read, the walk ending is the error
  `pagination_signal_missing` (`pagination_ended_early` for page and offset styles).

The announced total is looked up on every page (the latest one found wins, as a source may
grow during the walk): `pagination.total_path` when given, else the first found of
`TOTAL_HEADERS`, then `TOTAL_PATHS` in the body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from agents.base.actions import AgentError
from agents.base.security import redact_url
from agents.base.sources.payloads import get_path

if TYPE_CHECKING:
    from agents.data_collector.rest import Pagination

# Where APIs commonly announce their record total, in order of preference.
TOTAL_HEADERS = ("X-Total-Count", "X-Total")
TOTAL_PATHS = (
    "total",
    "total_count",
    "totalCount",
    "count",
    "meta.total",
    "meta.total_count",
    "pagination.total",
)
NO_TOTAL = "none"  # pagination.total_path: the API announces no total (ignore the defaults)
HEADER = "header:"  # pagination.total_path: a response header rather than a body path


@dataclass(frozen=True)
class Announced:
    """The record total a page announced, and where (a valid `total_path`)."""

    count: int
    by: str

    @property
    def shown(self) -> str:
        return self.by.removeprefix(HEADER) if self.by.startswith(HEADER) else f"body {self.by}"


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def announced_total(
    headers: httpx.Headers, payload: Any, total_path: str | None
) -> Announced | None:
    """The total this page announces, or None."""
    if total_path == NO_TOTAL:
        return None
    if total_path is not None:
        places = [total_path]
    else:
        places = [HEADER + h for h in TOTAL_HEADERS] + list(TOTAL_PATHS)
    for place in places:
        if place.startswith(HEADER):
            found = _count(headers.get(place.removeprefix(HEADER)))
        else:
            found = _count(get_path(payload, place)) if isinstance(payload, dict) else None
        if found is not None:
            return Announced(found, place)
    return None


@dataclass
class LoopGuard:
    """Refuses a next page already requested and a page/offset page repeating the last one."""

    seen: set[str] = field(default_factory=set)
    last: list[Any] | None = None

    @staticmethod
    def _key(request: tuple[str, dict[str, Any]]) -> str:
        url, params = request
        return json.dumps([url, sorted(params.items())], default=str)

    def start(self, request: tuple[str, dict[str, Any]]) -> None:
        """The first request of the walk."""
        self.seen.add(self._key(request))

    def page(self, number: int, records: list[Any], pagination: Pagination) -> None:
        """A page just read: a page or offset walk must move on."""
        if pagination.type in ("page", "offset") and records and records == self.last:
            param = pagination.page_param if pagination.type == "page" else pagination.offset_param
            raise AgentError(
                f"page {number} repeats page {number - 1} record for record: the API seems to "
                f"ignore {param!r}, and the walk would never end",
                code="pagination_loop",
                details={"page": number, "param": param},
            )
        self.last = records

    def next(self, request: tuple[str, dict[str, Any]], number: int) -> None:
        """The request after page `number`: never one already made."""
        key = self._key(request)
        if key in self.seen:
            url, params = request
            shown = ", ".join(f"{k}={str(v)[:80]}" for k, v in params.items())
            raise AgentError(
                f"page {number} points back to a page already read "
                f"({shown or redact_url(url)}); the walk would never end",
                code="pagination_loop",
                details={"page": number},
            )
        self.seen.add(key)


def cap_reached(max_pages: int, *, read: int, announced: Announced | None) -> AgentError:
    """The user's page cap reached with pages left, when no partial collect was asked for."""
    of = f" of {announced.count} announced ({announced.shown})" if announced else ""
    return AgentError(
        f"max_pages={max_pages} reached with more pages to read; {read} records read{of}. "
        "Raise max_pages, leave it unset to read every page, or set on_max_pages: partial",
        code="page_cap_reached",
        details={
            "max_pages": max_pages,
            "read": read,
            "announced": announced.count if announced else None,
            "announced_by": announced.by if announced else None,
        },
    )


def walk_ended_short(
    pagination: Pagination,
    *,
    pages: int,
    last_records: int,
    read: int,
    announced: Announced,
) -> AgentError:
    """The walk's own signal ended it with fewer records read than the source announced."""
    said = f"the API announced {announced.count} records ({announced.shown})"
    where = "the first page" if pages == 1 else f"page {pages}"
    kind = pagination.type
    code = "pagination_signal_missing"
    if kind == "none":
        what = f"pagination is none; {where} has {read} records: set pagination"
        missing = "pagination"
    elif kind in ("page", "offset"):
        code = "pagination_ended_early"
        size = f" of {pagination.page_size}" if pagination.page_size and last_records else ""
        what = f"{where} had {last_records}{size} records, which ends the walk; {read} read"
        missing = "a full page"
    else:
        if last_records == 0:
            missing = "records"
        elif kind == "link_header":
            missing = "Link rel=next header"
        elif kind == "next_link":
            missing = f"next-page link at {pagination.next_path!r}"
        else:
            missing = f"next cursor at {pagination.cursor_path!r}"
        what = f"{where} has no {missing}; {read} read"
    return AgentError(
        f"{said} but {what} (pagination.total_path: none if {announced.shown} is not the "
        "record count)",
        code=code,
        details={
            "announced": announced.count,
            "announced_by": announced.by,
            "read": read,
            "pages": pages,
            "missing": missing,
        },
    )
