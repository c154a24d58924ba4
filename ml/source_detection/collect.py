"""A detection in the collector's vocabulary: the `pagination` and `records_path` of a collect."""

from __future__ import annotations

from typing import Any

from ml.source_detection.types import SourceDetection

_KEEP = {
    "page": ("page_param", "start_page", "size_param", "page_size"),
    "offset": ("offset_param", "size_param", "page_size"),
    "cursor": ("cursor_param", "cursor_path"),
    "next_link": ("next_path",),
    "link_header": (),
    "none": (),
}
_TYPES = {"cursor_in_body": "cursor", "next_link_in_body": "next_link"}


def collector_pagination(detection: SourceDetection) -> tuple[dict[str, Any] | None, str]:
    """The collector's `pagination` for a detection, or None and why it cannot follow it."""
    found = detection.pagination
    kind = _TYPES.get(found["type"], found["type"])
    if kind not in _KEEP:
        return None, f"unknown pagination type {found['type']!r}"
    if kind == "cursor" and not found.get("cursor_path"):
        # Stripe-style: the next page starts after the last record's id; no token to follow.
        return None, (
            "the source continues after the last record "
            f"({found.get('cursor_param', 'starting_after')}=<last {found.get('cursor_field')}>), "
            "which the collector does not follow; give pagination explicitly"
        )
    if kind == "next_link" and not found.get("next_path"):
        return None, "a next link was detected but not where it is"
    params = {k: found[k] for k in _KEEP[kind] if found.get(k) is not None}
    return {"type": kind, **params}, f"detected {found['type']}"


def collector_records_path(detection: SourceDetection) -> str | None:
    """The collector's `records_path`: None for the body itself (the root list)."""
    return detection.records_path or None
