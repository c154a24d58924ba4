"""The baseline: the connector's rules behind the model's interface (`detect`).

For JSON bodies this is exactly what the agents do today (`agents/base/sources/payloads.py`:
`sniff_format`, `find_records`, `pagination_hints`). Those rules only know JSON, NDJSON and CSV,
so the other kinds get the plain rules a careful engineer would add on scheme, Content-Type and
tell-tale names (ListBucketResult, /graphql, <html>), never anything learned.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.base.sources import payloads
from ml.source_detection.body import HEAD_BYTES, parse_json_head
from ml.source_detection.features import FILE_EXTENSIONS, magic_format
from ml.source_detection.types import SourceDetection

_PAGINATION = {"cursor": "cursor_in_body", "next_link": "next_link_in_body"}
_FILE_TYPES = {
    "application/octet-stream": None,
    "binary/octet-stream": None,
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/avro": "avro",
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "application/zip": "zip",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/tab-separated-values": "tsv",
}


class RulesDetector:
    """Today's heuristics, answering with a `SourceDetection` like the model."""

    def detect(
        self, url: str, status: int | None, headers: dict[str, str], body_head: bytes
    ) -> SourceDetection:
        """Kind, records path and pagination by rules on scheme, Content-Type and key names."""
        head = body_head[:HEAD_BYTES]
        scheme = urlsplit(url).scheme.lower().split("+")[0] if "://" in url else ""
        if scheme in ("postgres", "postgresql"):
            return _answer("postgres")
        if scheme in ("redis", "rediss"):
            return _answer("redis_stream")
        if scheme not in ("http", "https"):
            return _answer("unknown")
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        main = ctype.split(";", 1)[0].strip().lower()
        path = urlsplit(url).path.lower()
        lowered = head[:2048].lower()
        if "graphql" in path:
            return _answer("graphql")
        if main == "text/html" or lowered.lstrip().startswith((b"<!doctype html", b"<html")):
            return _answer("html_page")
        if "xml" in main or lowered.lstrip(b"\xef\xbb\xbf \r\n").startswith(b"<?xml"):
            if b"listbucketresult" in lowered or b"enumerationresults" in lowered:
                return _answer("object_store_listing")
            return _answer("rest_xml")
        fmt = payloads.sniff_format(ctype, head)
        if fmt == "json":
            return _json(url, status, headers, head)
        if fmt in ("ndjson", "csv"):
            return _answer("file_over_http", fmt)
        last = path.rsplit("/", 1)[-1]
        ext = FILE_EXTENSIONS.get(last.rsplit(".", 1)[-1]) if "." in last else None
        if main in _FILE_TYPES or ext:
            return _answer("file_over_http", _FILE_TYPES.get(main) or ext or magic_format(head))
        return _answer("unknown")


def _answer(kind: str, fmt: str | None = None) -> SourceDetection:
    return SourceDetection(kind, 1.0, fmt, top=[(kind, 1.0)], detector="rules")


def _json(url: str, status: int | None, headers: dict[str, str], head: bytes) -> SourceDetection:
    payload = parse_json_head(head)
    response = httpx.Response(status or 200, headers=headers, request=httpx.Request("GET", url))
    pagination: dict[str, Any] = {"type": "none"}
    records_path: str | None = None
    if payload is not None:
        try:
            _, found = payloads.find_records(payload)
            records_path = found or ""
        except ValueError:
            records_path = None
        pagination = payloads.pagination_hints(payload, response)
    elif "next" in response.links:
        pagination = {"type": "link_header"}
    pagination["type"] = _PAGINATION.get(pagination["type"], pagination["type"])
    return SourceDetection(
        "rest_json",
        1.0,
        None,
        records_path,
        None,
        pagination,
        None,
        [("rest_json", 1.0)],
        "rules",
    )
