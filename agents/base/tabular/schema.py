"""Portable column type names for schemas in manifests, contracts and datasets.

Manifests say `{"amount": "float64", "created_at": "timestamp[us, UTC]"}`; a known schema in a
contract may use the same names or common aliases ("integer", "text", "timestamptz", ...).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

_SIMPLE: dict[type[pl.DataType], str] = {
    pl.Int8: "int8",
    pl.Int16: "int16",
    pl.Int32: "int32",
    pl.Int64: "int64",
    pl.UInt8: "uint8",
    pl.UInt16: "uint16",
    pl.UInt32: "uint32",
    pl.UInt64: "uint64",
    pl.Float32: "float32",
    pl.Float64: "float64",
    pl.String: "string",
    pl.Boolean: "bool",
    pl.Date: "date",
    pl.Time: "time",
    pl.Binary: "binary",
    pl.Null: "null",
}

_ALIASES: dict[str, pl.DataType] = {
    **{name: cls() for cls, name in _SIMPLE.items()},
    "int": pl.Int64(),
    "integer": pl.Int64(),
    "bigint": pl.Int64(),
    "long": pl.Int64(),
    "smallint": pl.Int16(),
    "float": pl.Float64(),
    "double": pl.Float64(),
    "number": pl.Float64(),
    "real": pl.Float32(),
    "str": pl.String(),
    "text": pl.String(),
    "utf8": pl.String(),
    "varchar": pl.String(),
    "boolean": pl.Boolean(),
    "datetime": pl.Datetime("us"),
    "timestamp": pl.Datetime("us"),
    "timestamptz": pl.Datetime("us", "UTC"),
    "json": pl.String(),
}

_TIMESTAMP = re.compile(r"^timestamp\[(ns|us|ms)(?:,\s*(?:tz=)?([^\]]+))?\]$", re.IGNORECASE)
_DURATION = re.compile(r"^duration\[(ns|us|ms)\]$")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def type_name(dtype: Any) -> str:
    """The portable name of a polars type (an instance or a bare class such as pl.Int64)."""
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.Datetime):
        zone = f", {dtype.time_zone}" if dtype.time_zone else ""
        return f"timestamp[{dtype.time_unit}{zone}]"
    if isinstance(dtype, pl.Duration):
        return f"duration[{dtype.time_unit}]"
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.List | pl.Array):
        return f"list[{type_name(dtype.inner)}]"
    if isinstance(dtype, pl.Struct):
        inner = ", ".join(f"{f.name}: {type_name(f.dtype)}" for f in dtype.fields)
        return f"struct<{inner}>"
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    return _SIMPLE.get(type(dtype), str(dtype).lower())


def parse_type(name: str) -> pl.DataType:
    """The polars type a portable name (or alias) stands for; ValueError if unknown."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    # Time zone names are case-sensitive: match the original text, not the lowered key.
    if match := _TIMESTAMP.match(name.strip()):
        unit, zone = match.groups()
        return pl.Datetime(unit.lower(), zone.strip() if zone else None)  # type: ignore[arg-type]
    if match := _DURATION.match(key):
        return pl.Duration(match.group(1))  # type: ignore[arg-type]
    if match := _DECIMAL.match(key):
        return pl.Decimal(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown column type {name!r}")


def schema_names(schema: pl.Schema | dict[str, Any]) -> dict[str, str]:
    """A polars schema as `{column: portable type name}`."""
    return {column: type_name(dtype) for column, dtype in schema.items()}


def parse_schema(schema: dict[str, str]) -> dict[str, pl.DataType]:
    """A `{column: type name}` mapping as polars types; ValueError names the bad column."""
    parsed = {}
    for column, name in schema.items():
        try:
            parsed[column] = parse_type(name)
        except ValueError as exc:
            raise ValueError(f"column {column!r}: {exc}") from exc
    return parsed


def union_schema(schemas: list[dict[str, str]]) -> dict[str, str]:
    """Columns of all schemas in first-seen order; a column keeps its first type."""
    merged: dict[str, str] = {}
    for schema in schemas:
        for column, name in schema.items():
            merged.setdefault(column, name)
    return merged
