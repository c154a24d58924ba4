"""Validating resources against CRD OpenAPI v3 schemas offline, and checking the schemas.

The validation itself is Helm's JSON-schema validator (the one that checks values.schema.json),
fed the CRD schema translated from OpenAPI v3.0 to JSON Schema: exclusiveMinimum becomes a
number and the x-kubernetes-* extensions are dropped (preserve-unknown-fields means "any").
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import helm_python

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (draft-07) equivalent of an OpenAPI v3.0 CRD schema node."""
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key == "properties":
            result[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            result[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            result[key] = [to_json_schema(sub) for sub in value]
        elif key == "format" and value in ("int64", "int32"):
            continue
        else:
            result[key] = value
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True:
            result[exclusive] = result.pop(bound)
    return result


class CrdValidator:
    """Validates objects against one CRD version's schema with Helm's validator."""

    def __init__(self, crd: dict[str, Any]) -> None:
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        self._dir = tempfile.TemporaryDirectory(prefix="crd-schema-")
        root = Path(self._dir.name)
        (root / "Chart.yaml").write_text("apiVersion: v2\nname: crd-schema\nversion: 0.0.1\n")
        (root / "values.yaml").write_text("{}\n")
        document = {"$schema": "http://json-schema.org/draft-07/schema#", **to_json_schema(schema)}
        (root / "values.schema.json").write_text(json.dumps(document))
        self._chart = helm_python.Chart.load(root)

    def errors(self, obj: dict[str, Any]) -> str | None:
        """None when obj is valid, else the validator's message."""
        try:
            self._chart.validate_schema(obj)
        except helm_python.HelmValuesError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        self._chart.close()
        self._dir.cleanup()


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """Where a schema breaks the rules Kubernetes sets for structural CRD schemas."""
    problems: list[str] = []
    here = path or "<root>"
    untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-int-or-string"
    )
    kind = node.get("type")
    if kind is None and not untyped_ok:
        problems.append(f"{here}: no type")
    if kind is not None and kind not in _TYPES:
        problems.append(f"{here}: unknown type {kind!r}")
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        problems.append(f"{here}: properties and additionalProperties together")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{here}: required {name!r} is not a property")
    if kind == "array" and "items" not in node:
        problems.append(f"{here}: array without items")
    if node.get("x-kubernetes-list-type") == "map":
        keys = node.get("x-kubernetes-list-map-keys", [])
        required = set(node["items"].get("required", []))
        if not keys or not set(keys) <= required:
            problems.append(f"{here}: list-map keys must be required in items")
    if kind in _TYPES:
        allowed = _TYPES[kind]
        for value in node.get("enum", []):
            if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
                problems.append(f"{here}: enum value {value!r} is not {kind}")
        if "default" in node and not isinstance(node["default"], allowed):
            problems.append(f"{here}: default {node['default']!r} is not {kind}")
        if "pattern" in node:
            try:
                re.compile(node["pattern"])
            except re.error as exc:
                problems.append(f"{here}: bad pattern: {exc}")
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]")
    return problems


def schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a printer-column JSONPath such as .status.conditions[?(...)].x selects."""
    node: dict[str, Any] | None = schema
    for segment in re.findall(r"\.([A-Za-z0-9_]+)(\[[^\]]*\])?", json_path):
        name, index = segment
        if node is None or name not in node.get("properties", {}):
            return None
        node = node["properties"][name]
        if index:
            node = node.get("items")
    return node
