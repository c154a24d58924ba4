"""The source-detection model: four small linear models over engineered features.

- kind: multinomial logistic regression over descriptor, header and body-shape features;
- records path: every list-valued path in the body is a candidate, scored by a binary
  classifier; the best one wins (ranking, not generation: the answer is always a real path);
- pagination roles: every scalar leaf is classified as next link, cursor, page number, offset,
  page size, "has more" flag or other;
- pagination type: a classifier over the best role scores, the Link header and URL parameters;
  its parameters (next_path, cursor_path, ...) are read from the leaves that won their role.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression

from ml.source_detection.body import HEAD_BYTES, parse_json_head
from ml.source_detection.features import (
    has_next_link_header,
    kind_features,
    leaf_candidates,
    lower_headers,
    record_candidates,
    sniff_file_format,
    tokens,
)
from ml.source_detection.types import SourceDetection, cursor_param_for

ROLES = ("next_link", "cursor", "page", "offset", "size", "more", "other")


class _Linear:
    """A DictVectorizer and a logistic regression, fitted together."""

    def __init__(self, c: float = 1.0) -> None:
        self.vec = DictVectorizer()
        self.clf = LogisticRegression(C=c, max_iter=3000)

    def fit(self, rows: list[dict[str, float]], labels: list[Any]) -> _Linear:
        self.clf.fit(self.vec.fit_transform(rows), labels)
        return self

    def proba(self, rows: list[dict[str, float]]) -> np.ndarray:
        return self.clf.predict_proba(self.vec.transform(rows))

    @property
    def classes(self) -> list[Any]:
        return list(self.clf.classes_)


def pagination_features(
    url: str,
    headers: Mapping[str, str],
    payload: Any,
    role_best: dict[str, float],
    where: dict[str, tuple[str, Any, float]],
) -> dict[str, float]:
    """Features of the page as a whole, for the pagination-type classifier."""
    f: dict[str, float] = {f"best:{role}": p for role, p in role_best.items()}
    # A followable link in the body settles it whatever page figures sit beside it.
    link = where.get("next_link")
    if link and isinstance(link[1], str) and link[1].startswith(("http://", "https://", "/")):
        f["next_url"] = link[2]
    f["link_next"] = float(has_next_link_header(headers))
    f["root_list"] = float(isinstance(payload, list))
    f["no_json"] = float(payload is None)
    for name in lower_headers(headers):
        if name.startswith("x-") and ("total" in name or "page" in name):
            f[f"h:{name}"] = 1
    if "://" in url:
        for key, _ in parse_qsl(urlsplit(url).query):
            for tok in tokens(key):
                f[f"q:{tok}"] = 1
    return f


class SourceDetector:
    """Predicts what a source is from its descriptor and a probe (see `detect`)."""

    def __init__(self) -> None:
        self.kind = _Linear(c=4.0)
        self.records = _Linear(c=2.0)
        self.roles = _Linear(c=2.0)
        self.paging = _Linear(c=2.0)
        self.version = "1"

    def fit(self, samples: list[Any]) -> SourceDetector:
        """Fit the four models on generated samples (see generate.py)."""
        kind_rows, kind_y, rec_rows, rec_y, leaf_rows, leaf_y = [], [], [], [], [], []
        parsed = []
        for s in samples:
            payload = parse_json_head(s.body)
            parsed.append(payload)
            kind_rows.append(kind_features(s.url, s.status, s.headers, s.body, payload))
            kind_y.append(s.kind)
            if s.kind != "rest_json" or payload is None:
                continue
            for path, feats in record_candidates(payload):
                rec_rows.append(feats)
                rec_y.append(int(path == s.records_path))
            for path, _, feats in leaf_candidates(payload):
                leaf_rows.append(feats)
                leaf_y.append(s.roles.get(path, "other"))
        self.kind.fit(kind_rows, kind_y)
        self.records.fit(rec_rows, rec_y)
        self.roles.fit(leaf_rows, leaf_y)
        page_rows, page_y = [], []
        for s, payload in zip(samples, parsed, strict=True):
            if s.kind == "rest_json":
                best, where = self._roles(payload)
                page_rows.append(pagination_features(s.url, s.headers, payload, best, where))
                page_y.append(s.pagination["type"])
        self.paging.fit(page_rows, page_y)
        return self

    def _roles(self, payload: Any) -> tuple[dict[str, float], dict[str, tuple[str, Any, float]]]:
        """Per role: the best leaf's probability, and (path, value, p) of that leaf."""
        leaves = leaf_candidates(payload) if payload is not None else []
        best = {r: 0.0 for r in ROLES if r != "other"}
        where: dict[str, tuple[str, Any, float]] = {}
        if not leaves:
            return best, where
        probs = self.roles.proba([f for _, _, f in leaves])
        for j, role in enumerate(self.roles.classes):
            if role == "other":
                continue
            i = int(np.argmax(probs[:, j]))
            best[role] = float(probs[i, j])
            where[role] = (leaves[i][0], leaves[i][1], float(probs[i, j]))
        return best, where

    def detect(
        self, url: str, status: int | None, headers: dict[str, str], body_head: bytes
    ) -> SourceDetection:
        """Kind, records path and pagination of the source behind this probe."""
        head = body_head[:HEAD_BYTES]
        payload = parse_json_head(head)
        probs = self.kind.proba([kind_features(url, status, headers, head, payload)])[0]
        order = np.argsort(probs)[::-1]
        top = [(str(self.kind.classes[i]), float(probs[i])) for i in order[:3]]
        kind, confidence = top[0]
        fmt = sniff_file_format(url, headers, head) if kind == "file_over_http" else None
        if payload is None or not isinstance(payload, dict | list):
            return SourceDetection(kind, confidence, fmt, top=top, detector="model")
        records_path, records_p = "", None
        candidates = record_candidates(payload)
        if candidates:
            scores = self.records.proba([f for _, f in candidates])[:, 1]
            i = int(np.argmax(scores))
            records_path, records_p = candidates[i][0], float(scores[i])
        best, where = self._roles(payload)
        paging = self.paging.proba([pagination_features(url, headers, payload, best, where)])[0]
        j = int(np.argmax(paging))
        pagination = _parameters(str(self.paging.classes[j]), url, where)
        return SourceDetection(
            kind,
            confidence,
            fmt,
            records_path,
            records_p,
            pagination,
            float(paging[j]),
            top,
            "model",
        )


def _parameters(kind: str, url: str, where: dict[str, tuple[str, Any, float]]) -> dict[str, Any]:
    """The collector's parameters for a pagination type, read from the winning leaves."""
    out: dict[str, Any] = {"type": kind}
    query = [k for k, _ in parse_qsl(urlsplit(url).query)] if "://" in url else []
    if kind == "next_link_in_body" and "next_link" in where:
        out["next_path"] = where["next_link"][0]
    elif kind == "cursor_in_body":
        cursor = where.get("cursor")
        # A weak best cursor still beats none: a token-shaped leaf is what a cursor looks like.
        if cursor and cursor[2] >= 0.15 and cursor[1] not in (None, "", True, False):
            out["cursor_path"] = cursor[0]
            out["cursor_param"] = cursor_param_for(cursor[0])
        else:  # no token in the body: continue after the last record (Stripe's convention)
            out.update(
                cursor_path=None,
                cursor_from="last_record",
                cursor_field="id",
                cursor_param="starting_after",
            )
        if (more := where.get("more")) and more[2] >= 0.3:
            out["has_more_path"] = more[0]
    elif kind in ("page", "offset"):
        size = where.get("size")
        if size and size[2] >= 0.3 and isinstance(size[1], int):
            out["size_param"] = size[0].rsplit(".", 1)[-1]
            out["page_size"] = size[1]
        else:
            sized = [k for k in query if {"limit", "size", "per", "rows"} & set(tokens(k))]
            if sized:
                out["size_param"] = sized[0]
        role = where.get(kind)
        if kind == "page":
            named = [
                k for k in query if "page" in tokens(k) and not {"size", "per"} & set(tokens(k))
            ]
            out["page_param"] = named[0] if named else "page"
            if role and role[2] >= 0.3 and isinstance(role[1], int):
                out["start_page"] = role[1]
        else:
            named = [k for k in query if {"offset", "skip", "start"} & set(tokens(k))]
            key = role[0].rsplit(".", 1)[-1] if role and role[2] >= 0.3 else None
            out["offset_param"] = named[0] if named else (key or "offset")
    return out
