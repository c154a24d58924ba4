"""The vocabulary of source detection: what a source is, where its records are, how it pages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "rest_json",
    "rest_xml",
    "graphql",
    "file_over_http",
    "object_store_listing",
    "postgres",
    "redis_stream",
    "html_page",
    "unknown",
)
PAGINATION_TYPES = ("page", "offset", "cursor_in_body", "next_link_in_body", "link_header", "none")
# The parameter of each pagination type that says where to look (checked in the evaluation).
LOCATOR = {"next_link_in_body": "next_path", "cursor_in_body": "cursor_path"}
ROOT = ""  # records_path of a body that is itself the list of records


@dataclass(frozen=True)
class SourceDetection:
    """One detector's answer for a probe (the model and the rules give the same shape)."""

    kind: str
    confidence: float
    file_format: str | None = None  # file_over_http: csv, tsv, json, ndjson, parquet, ...
    records_path: str | None = None  # JSON bodies: dotted path to the records, "" the root
    records_confidence: float | None = None
    pagination: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    pagination_confidence: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)  # best kinds first
    detector: str = ""  # "model" or "rules"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for step outputs."""
        out = asdict(self)
        out["top"] = [{"kind": k, "p": round(p, 4)} for k, p in self.top]
        for key in ("confidence", "records_confidence", "pagination_confidence"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


def cursor_param_for(cursor_path: str) -> str:
    """The query parameter that usually carries a token found at `cursor_path`."""
    key = cursor_path.rsplit(".", 1)[-1]
    known = {
        "endCursor": "after",
        "end_cursor": "after",
        "_scroll_id": "scroll_id",
        "nextPageToken": "pageToken",
        "next_page_token": "page_token",
        "next_token": "pagination_token",
    }
    if key in known:
        return known[key]
    for prefix in ("next_", "next", "Next"):
        if key.startswith(prefix) and len(key) > len(prefix):
            rest = key[len(prefix) :]
            return rest[0].lower() + rest[1:]
    return key
