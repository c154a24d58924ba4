"""Features of a probe: descriptor tokens, headers, body shape; candidate record lists and leaves.

Names are split into word tokens (`@odata.nextLink` -> odata, next, link; `pageInfo.endCursor`
-> page, info, end, cursor), so a convention never seen in training still shares tokens with
the ones that were: this is what lets the model generalise across frameworks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ml.source_detection.body import walk

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
MAGIC = {
    b"PAR1": "parquet",
    b"Obj\x01": "avro",
    b"ORC": "orc",
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"%PDF": "pdf",
    b"\x89PNG": "png",
    b"\xff\xd8\xff": "jpeg",
}
FILE_EXTENSIONS = {
    "csv": "csv",
    "tsv": "tsv",
    "json": "json",
    "ndjson": "ndjson",
    "jsonl": "ndjson",
    "parquet": "parquet",
    "avro": "avro",
    "xlsx": "xlsx",
    "gz": "gzip",
    "zip": "zip",
    "xml": "xml",
    "orc": "orc",
}


def tokens(name: str) -> list[str]:
    """Lower-case word tokens of a key, path or header name."""
    return [t.lower() for t in _SPLIT.split(_CAMEL.sub(" ", name)) if t]


def _ctype(headers: Mapping[str, str]) -> str:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with lower-case names."""
    return {k.lower(): v for k, v in headers.items()}


def has_next_link_header(headers: Mapping[str, str]) -> bool:
    """Whether an RFC 8288 Link header announces a next page."""
    link = lower_headers(headers).get("link", "")
    return bool(re.search(r"""rel\s*=\s*"?next"?""", link))


def magic_format(head: bytes) -> str | None:
    """The binary format announced by the first bytes, if any."""
    for magic, fmt in MAGIC.items():
        if head.startswith(magic):
            return "xlsx" if fmt == "zip" and b"[Content_Types].xml" in head[:200] else fmt
    return None


def text_format(head: bytes) -> str | None:
    """ndjson, csv or tsv for text heads that look like one (consistent fields per line)."""
    text = head.decode("utf-8", errors="replace")
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if len(lines) >= 2 and all(ln.lstrip().startswith("{") for ln in lines[:-1]):
        return "ndjson"
    for delim, fmt in (("\t", "tsv"), (",", "csv"), (";", "csv"), ("|", "csv")):
        counts = [ln.count(delim) for ln in lines[:-1]]
        if len(counts) >= 2 and counts[0] > 0 and len(set(counts)) == 1:
            return fmt
    return None


def sniff_file_format(url: str, headers: Mapping[str, str], head: bytes) -> str:
    """A file's format: content first (magic bytes, text shape), then extension, then type."""
    found = magic_format(head)
    if found:
        return found
    stripped = head.lstrip()
    if stripped.startswith((b"{", b"[")):
        return text_format(head) or "json"
    if stripped.startswith(b"<"):
        return "xml"
    found = text_format(head)
    if found:
        return found
    ext = urlsplit(url).path.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    return FILE_EXTENSIONS.get(ext, "other")


def kind_features(
    url: str, status: int | None, headers: Mapping[str, str], head: bytes, payload: Any
) -> dict[str, float]:
    """Features of the whole probe, for the kind classifier."""
    f: dict[str, float] = {}
    parts = urlsplit(url) if "://" in url else None
    scheme = parts.scheme.lower() if parts else ""
    f[f"scheme={scheme.split('+')[0]}"] = 1
    for gram in (scheme[i : i + 3] for i in range(max(len(scheme) - 2, 0))):
        f[f"scheme3={gram}"] = 1
    for tok in tokens(url)[:40]:
        f[f"url:{tok}"] = 1
    if parts:
        last = parts.path.rsplit("/", 1)[-1]
        f[f"ext={last.rsplit('.', 1)[-1].lower() if '.' in last else ''}"] = 1
        for key, _ in parse_qsl(parts.query):
            f[f"qkey:{key.lower()}"] = 1
    if "=" in url and "://" not in url:
        f["keyword_dsn"] = 1
    f[f"status={'none' if status is None else status // 100}"] = 1
    if status in (204, 400, 401, 404, 405):
        f[f"status_exact={status}"] = 1
    low = lower_headers(headers)
    ctype = _ctype(headers)
    f[f"ctype={ctype or 'none'}"] = 1
    for tok in tokens(ctype):
        f[f"ctype:{tok}"] = 1
    for name in low:
        f[f"h:{name if not name.startswith(('x-amz', 'x-goog', 'x-ms')) else name[:6]}"] = 1
    if has_next_link_header(headers):
        f["link_next"] = 1
    f["empty"] = float(not head.strip())
    f["log_len"] = math.log1p(len(head)) / 10
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    f[f"first={_first_class(first)}"] = 1
    fmt = magic_format(head)
    if fmt:
        f[f"magic={fmt}"] = 1
    if not fmt and head.strip():
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]) / min(len(head), 512)
        f["printable"] = printable
        if (tf := text_format(head)) is not None:
            f[f"textfmt={tf}"] = 1
    lowered = head[:2048].lower()
    for marker in (
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<div",
        b"graphiql",
        b"graphql",
        b"apollo",
        b"<?xml",
        b"xmlns",
        b"soap",
        b"listbucketresult",
        b"enumerationresults",
        b"<contents>",
        b"<rss",
        b"<feed",
        b"<item",
        b"<entry",
        b"storage#",
    ):
        if marker in lowered:
            f[f"body:{marker.decode()}"] = 1
    if m := re.search(rb"<([A-Za-z_][\w:.-]*)", head[:400].replace(b"<?xml", b"")):
        for tok in tokens(m.group(1).decode("latin-1")):
            f[f"xmlroot:{tok}"] = 1
    if first == b"<":
        for tag in set(re.findall(rb"<([A-Za-z_][\w:.-]*)", head[:2048])):
            for tok in tokens(tag.decode("latin-1")):
                f[f"xmltag:{tok}"] = 1
    if payload is not None:
        f[f"json={type(payload).__name__}"] = 1
        if isinstance(payload, dict):
            for key in list(payload)[:30]:
                for tok in tokens(str(key)):
                    f[f"jkey:{tok}"] = 1
            for key in ("kind", "object", "type"):
                if isinstance(payload.get(key), str):
                    for tok in tokens(payload[key]):
                        f[f"jval:{tok}"] = 1
        f["json_lists"] = min(sum(isinstance(v, list) for _, v, _ in walk(payload)), 5) / 5
    return f


def _first_class(first: bytes) -> str:
    if first and first in b"{[<":
        return first.decode("latin-1")
    return "text" if first.isascii() and first.isalnum() else "bin"


def record_candidates(payload: Any) -> list[tuple[str, dict[str, float]]]:
    """Every list reachable through dicts (the root included), with its features."""
    found = [
        (path, value, parent) for path, value, parent in walk(payload) if isinstance(value, list)
    ]
    sizes = [len(v) for _, v, _ in found]
    widths = [_mean_keys(v) for _, v, _ in found]
    out = []
    for (path, value, parent), size, width in zip(found, sizes, widths, strict=True):
        f: dict[str, float] = {"bias": 1.0}
        segments = path.split(".") if path else []
        f["root"] = float(not path)
        f["depth"] = len(segments) / 4
        f["log_len"] = math.log1p(size) / 4
        dicts = sum(isinstance(x, dict) for x in value)
        f["dict_frac"] = dicts / size if size else 0.0
        f["empty"] = float(size == 0)
        f["scalar_frac"] = (
            sum(isinstance(x, str | int | float) for x in value) / size if size else 0.0
        )
        f["keys"] = min(width, 20) / 20
        f["largest"] = float(size == max(sizes))
        f["widest"] = float(width == max(widths) and width > 0)
        f["only_list"] = float(len(found) == 1)
        f["siblings"] = min(len(parent), 20) / 20 if isinstance(parent, dict) else 0.0
        if value and isinstance(value[0], dict):
            first = value[0]
            f["has_id"] = float(any(k.lower().lstrip("_") in ("id", "uuid", "key") for k in first))
            for key in ("node", "attributes", "_source", "fields", "sys", "url", "label", "active"):
                if key in first:
                    f[f"elem:{key}"] = 1
        if segments:
            for tok in tokens(segments[-1]):
                f[f"key:{tok}"] = 1
            f["plural"] = float(segments[-1].endswith("s"))
        for seg in segments[:-1]:
            for tok in tokens(seg):
                f[f"parent:{tok}"] = 1
        out.append((path, f))
    return out


def _mean_keys(value: list[Any]) -> float:
    dicts = [x for x in value[:20] if isinstance(x, dict)]
    return sum(len(d) for d in dicts) / len(dicts) if dicts else 0.0


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "zero" if value == 0 else "number"
    text = str(value)
    if text.startswith(("http://", "https://", "/")):
        return "url"
    if re.fullmatch(r"[A-Za-z0-9+/=_\-:.]{6,}", text) and not text.isdigit():
        return "opaque"
    return "text"


def leaf_candidates(payload: Any) -> list[tuple[str, Any, dict[str, float]]]:
    """Every scalar reachable through dicts, with its features (for the pagination roles)."""
    out = []
    for path, value, parent in walk(payload):
        if not path or isinstance(value, dict | list):
            continue
        f: dict[str, float] = {"bias": 1.0}
        segments = path.split(".")
        for tok in tokens(segments[-1]):
            f[f"key:{tok}"] = 1
        for seg in segments[:-1]:
            for tok in tokens(seg):
                f[f"parent:{tok}"] = 1
        f["depth"] = len(segments) / 4
        f[f"type={type(value).__name__}"] = 1
        if isinstance(value, str):
            f["url_abs"] = float(value.startswith(("http://", "https://")))
            f["url_rel"] = float(value.startswith("/"))
            f["has_query"] = float("?" in value)
            f["log_len"] = math.log1p(len(value)) / 5
            f["spaces"] = float(" " in value)
            f["opaque"] = float(
                bool(re.fullmatch(r"[A-Za-z0-9+/=_\-:.]{6,}", value)) and not value.isdigit()
            )
            for tok in tokens(value.split("?", 1)[1])[:10] if "?" in value else ():
                f[f"query:{tok}"] = 1
        elif isinstance(value, bool):
            f["true"] = float(value)
        elif isinstance(value, int | float):
            f["zero"] = float(value == 0)
            f["one"] = float(value == 1)
            f["round"] = float(value in (10, 15, 20, 25, 30, 50, 100, 200, 250, 500, 1000))
        # Value shape x name token: "a URL under a `next` name" whatever the nesting, which
        # is what carries over from one framework's convention to another's.
        shape = _shape(value)
        f[f"shape={shape}"] = 1
        for tok in {t for seg in segments for t in tokens(seg)}:
            f[f"tok:{tok}"] = 1
            f[f"{shape}&tok:{tok}"] = 1
        if isinstance(parent, dict):
            for key in list(parent)[:20]:
                if key != segments[-1]:
                    for tok in tokens(str(key))[:3]:
                        f[f"sib:{tok}"] = 1
        out.append((path, value, f))
    return out
