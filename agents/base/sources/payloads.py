"""Reading the shape of API payloads: where the records are, how the API paginates, field types."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import orjson
import polars as pl

# Keys under which APIs commonly put their records, in order of preference.
RECORD_KEYS = ("data", "items", "results", "records", "rows", "entries", "values")
NEXT_LINK_PATHS = ("next", "next_url", "links.next", "_links.next.href", "paging.next")
CURSOR_PATHS = ("next_cursor", "cursor", "meta.next_cursor", "pagination.next_cursor")
PAGE_KEYS = ("page", "total_pages", "meta.page", "pagination.page")
OFFSET_KEYS = ("offset", "meta.offset", "pagination.offset")
# An integer orjson would round to a float: above u64 (20+ digits) or below i64 (-19+ digits).
# Found by mapping digits to 0 and the rest but "-" to a space (C speed, where a regex
# backtracks at every digit); a long digit run in a string or a fraction only costs the
# slower stdlib decode.
_DIGITS = bytes(
    b"0"[0] if chr(c).isdigit() and c < 128 else c if c == b"-"[0] else b" "[0] for c in range(256)
)
_WIDE_MARKS = (b"0" * 20, b"-" + b"0" * 19)


def _wide_integer(raw: bytes) -> bool:
    digits = raw.translate(_DIGITS)
    return any(mark in digits for mark in _WIDE_MARKS)


def decode_json(raw: bytes) -> tuple[Any, bool]:
    """The JSON value of `raw`, and whether the stdlib decoded it rather than orjson.

    orjson first (several times faster); the stdlib where orjson would refuse the payload or
    change a value: NaN and Infinity, numbers beyond a double, a byte-order mark, UTF-16,
    lone surrogates, integers beyond 64 bits. A value the stdlib decoded may hold what orjson
    cannot encode (NaN, wide integers), so encode it with the stdlib too. ValueError when
    `raw` is not JSON.
    """
    if not _wide_integer(raw):
        try:
            return orjson.loads(raw), False
        except orjson.JSONDecodeError:
            pass  # refused by orjson (NaN, a BOM, UTF-16, ...): the stdlib below decides
    return json.loads(raw), True


def get_path(payload: Any, dotted: str) -> Any:
    """The value at `a.b.c` inside nested dicts (list items by index), or None.

    A key may itself hold dots (OData's `@odata.nextLink`): when a part is not a key, the
    longest run of parts that is one wins.
    """
    node = payload
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if isinstance(node, dict):
            if parts[i] in node:
                node, i = node[parts[i]], i + 1
                continue
            joined = [j for j in range(len(parts), i + 1, -1) if ".".join(parts[i:j]) in node]
            if not joined:
                return None
            node, i = node[".".join(parts[i : joined[0]])], joined[0]
        elif isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            node, i = node[int(parts[i])], i + 1
        else:
            return None
    return node


def find_records(payload: Any, path: str | None = None) -> tuple[list[Any], str | None]:
    """The list of records in `payload` and the path where it was found.

    With `path` given, the value there must be a list; otherwise a top-level list, or the first
    common record key holding a list, or the only list-valued key.
    """
    if path:
        value = get_path(payload, path)
        if not isinstance(value, list):
            raise ValueError(f"no list of records at {path!r}")
        return value, path
    if isinstance(payload, list):
        return payload, None
    if isinstance(payload, dict):
        for key in RECORD_KEYS:
            if isinstance(payload.get(key), list):
                return payload[key], key
        lists = [k for k, v in payload.items() if isinstance(v, list)]
        if len(lists) == 1:
            return payload[lists[0]], lists[0]
        return [payload], None
    raise ValueError("the payload holds no records")


def pagination_hints(payload: Any, response: httpx.Response) -> dict[str, Any]:
    """How the endpoint seems to paginate, from its Link header and body keys."""
    if "next" in response.links:
        return {"type": "link_header"}
    if isinstance(payload, dict):
        for path in NEXT_LINK_PATHS:
            value = get_path(payload, path)
            if isinstance(value, str) and value.startswith(("http://", "https://", "/")):
                return {"type": "next_link", "next_path": path}
        for path in CURSOR_PATHS:
            if isinstance(get_path(payload, path), str | int):
                return {"type": "cursor", "cursor_path": path}
        for path in PAGE_KEYS:
            if isinstance(get_path(payload, path), int):
                return {"type": "page"}
        for path in OFFSET_KEYS:
            if isinstance(get_path(payload, path), int):
                return {"type": "offset"}
    return {"type": "none"}


def sniff_format(content_type: str, sample: bytes) -> str:
    """json, ndjson, csv or unknown, from the content type and the first bytes."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if "ndjson" in ctype or "jsonl" in ctype or "json-seq" in ctype:
        return "ndjson"
    if ctype.endswith("json"):
        return "json"
    if ctype in ("text/csv", "application/csv"):
        return "csv"
    head = sample.lstrip()[:1]
    if head in (b"{", b"["):
        lines = sample.strip().splitlines()
        many = len(lines) > 1 and all(ln.strip().startswith(b"{") for ln in lines)
        return "ndjson" if many else "json"
    return "unknown"


def infer_fields(records: list[Any]) -> list[dict[str, str]]:
    """Field names and polars types of the first records (blocking: call in a thread)."""
    dicts = [r for r in records[:200] if isinstance(r, dict)]
    if not dicts:
        return []
    try:
        frame = pl.from_dicts(dicts, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        names = dict.fromkeys(k for d in dicts for k in d)
        return [{"name": n, "type": "mixed"} for n in names]
    return [{"name": n, "type": str(t)} for n, t in frame.schema.items()]


def parse_sample(fmt: str, sample: bytes) -> Any:
    """The decoded sample: a JSON value, a list of NDJSON records, or CSV rows (blocking)."""
    if fmt == "json":
        return json.loads(sample)
    if fmt == "ndjson":
        return [json.loads(line) for line in sample.splitlines() if line.strip()]
    if fmt == "csv":
        try:
            frame = pl.read_csv(io.BytesIO(sample), n_rows=200, infer_schema_length=200)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(str(exc)) from exc
        return frame.to_dicts()
    raise ValueError(f"cannot parse {fmt}")
