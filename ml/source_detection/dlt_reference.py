"""dlt's auto-detection behind the detectors' interface: the issue's reference to beat.

dlt's REST client, given no paginator and no data selector, detects both from the first
response: `PaginatorFactory.create_paginator` (Link header, next link in the body, total
pages, cursor in the body, else a single page) and `find_response_page_data` (the first list
under a records-like key, else the least nested list). This calls exactly those functions on
each probe. dlt answers only for REST JSON, so it is scored on records path and pagination, not
on kind. A probe's body is cut short; dlt is handed the same repaired JSON the model reads
(`parse_json_head`), since on a cut body `response.json()` would fail and dlt detect nothing.
"""

from __future__ import annotations

import json
from typing import Any

from dlt.sources.helpers.rest_client import detector
from dlt.sources.helpers.rest_client.paginators import (
    HeaderLinkPaginator,
    JSONLinkPaginator,
    JSONResponseCursorPaginator,
    PageNumberPaginator,
)
from requests import Response
from requests.structures import CaseInsensitiveDict

from ml.source_detection.body import HEAD_BYTES, parse_json_head
from ml.source_detection.types import ROOT, SourceDetection

_TYPES: tuple[tuple[type, str], ...] = (
    (HeaderLinkPaginator, "link_header"),
    (JSONLinkPaginator, "next_link_in_body"),
    (JSONResponseCursorPaginator, "cursor_in_body"),
    (PageNumberPaginator, "page"),
)


def _response(url: str, status: int | None, headers: dict[str, str], body: bytes) -> Response:
    response = Response()
    response.url = url
    response.status_code = status or 200
    response.headers = CaseInsensitiveDict(headers)
    response.encoding = "utf-8"
    response._content = body
    return response


class DltReference:
    """`detect(url, status, headers, body)` answered by dlt's own detection functions."""

    def detect(
        self, url: str, status: int | None, headers: dict[str, str], body_head: bytes
    ) -> SourceDetection:
        """Records path and pagination as dlt's REST client would detect them."""
        payload = parse_json_head(body_head[:HEAD_BYTES])
        if payload is None:
            return SourceDetection(kind="unknown", confidence=0.0, detector="dlt")
        response = _response(url, status, headers, json.dumps(payload).encode())
        path, _ = detector.find_response_page_data(payload)
        records = ROOT if tuple(path) == ("$",) else ".".join(path)
        try:
            paginator, score = detector.PaginatorFactory().create_paginator(response)
        except Exception:  # dlt fails on this response (a key its JSONPath cannot compile)
            paginator, score = None, 0.0
        pagination = _pagination(paginator, payload)
        return SourceDetection(
            kind="rest_json",
            confidence=1.0,
            records_path=records,
            pagination=pagination,
            pagination_confidence=score,
            detector="dlt",
        )


def _pagination(paginator: Any, payload: Any) -> dict[str, Any]:
    """dlt's paginator in the detectors' vocabulary (the field it reads, where it has one)."""
    kind = next((name for cls, name in _TYPES if isinstance(paginator, cls)), "none")
    if paginator is None:
        kind = "error"
    out: dict[str, Any] = {"type": kind}
    if kind in ("next_link_in_body", "cursor_in_body"):
        # Both paginators read the field find_next_page_path finds; its parts joined as dlt does.
        parts, _ = detector.find_next_page_path(payload)
        out["next_path" if kind == "next_link_in_body" else "cursor_path"] = ".".join(parts)
    return out
