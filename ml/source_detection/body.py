"""Reading a probe's body head: tolerant JSON (a head is often cut mid-value), dotted paths.

A probe holds only the first bytes of a response, so a JSON page is usually truncated. Rather
than give up, `parse_json_head` cuts the text back to the last complete value and closes the
open containers, which keeps every key seen before the cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

HEAD_BYTES = 8192  # how much of a body the detectors look at
MAX_DEPTH = 6


def parse_json_head(head: bytes) -> Any:
    """The JSON value in `head`, repaired if cut short; None when it is not JSON at all."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text or text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    repaired = _close_truncated(text)
    if repaired is None:
        return None
    try:
        return json.loads(repaired)
    except ValueError:
        return None


def _close_truncated(text: str) -> str | None:
    """`text` cut at its last complete element, with its open brackets closed."""
    stack: list[str] = []
    in_string = escaped = False
    cut: tuple[int, str] | None = None  # (position, closers) at the last safe point
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
            cut = (i + 1, "".join(reversed(stack)))
        elif ch in "]}":
            if not stack:
                return None
            stack.pop()
            if not stack:
                return text[: i + 1]
            cut = (i + 1, "".join(reversed(stack)))
        elif ch == ",":
            # Everything before a comma is complete: the element or the key/value pair.
            cut = (i, "".join(reversed(stack)))
    if cut is None:
        return None
    position, closers = cut
    body = text[:position].rstrip()
    if body.endswith(":"):  # a key without its value (cannot happen at a comma; be safe)
        return None
    return body + closers


def get_path(payload: Any, dotted: str) -> Any:
    """The value at `a.b.c` ("" is the payload itself); a key may hold dots (`@odata.nextLink`)."""
    if dotted == "":
        return payload
    parts = dotted.split(".")
    node, i = payload, 0
    while i < len(parts):
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):  # the longest key that matches wins
                key = ".".join(parts[i:j])
                if key in node:
                    node, i = node[key], j
                    break
            else:
                return None
        elif isinstance(node, list) and parts[i].isdigit() and int(parts[i]) < len(node):
            node, i = node[int(parts[i])], i + 1
        else:
            return None
    return node


def join(prefix: str, key: str) -> str:
    """`prefix.key`, or `key` at the root."""
    return f"{prefix}.{key}" if prefix else key


def walk(payload: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """(path, value, parent) for every value reachable through dicts only (not into lists)."""
    if depth == 0:
        yield "", payload, None
    if not isinstance(payload, dict) or depth >= MAX_DEPTH:
        return
    for key, value in payload.items():
        path = join(prefix, str(key))
        yield path, value, payload
        if isinstance(value, dict):
            yield from walk(value, path, depth + 1)
