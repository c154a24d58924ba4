"""Data quality checks over a dataset or files: row count, not-null, uniqueness, value ranges,
and whether the collect read what its source announced.

The data checks are aggregated in one streaming polars query; the result is one entry per check.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from agents.base.completeness import Completeness


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: Any = Field(None, description="smallest allowed value (inclusive); none: unbounded")
    max: Any = Field(None, description="largest allowed value (inclusive); none: unbounded")


class Checks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row_count_min: int | None = Field(None, ge=0, description="at least this many rows")
    row_count_max: int | None = Field(None, ge=0, description="at most this many rows")
    not_null: list[str] = Field(default_factory=list, description="columns without nulls")
    unique: list[str | list[str]] = Field(
        default_factory=list,
        description="columns (or lists of columns, checked together) without duplicate values",
    )
    ranges: dict[str, Range] = Field(
        default_factory=dict, description="{column: {min, max}}: values outside count as failures"
    )
    announced_matches: bool | None = Field(
        None,
        description="the collect read exactly the records its source announced (needs the "
        "`collected` counts); default: on when they carry an announced count and the outcome "
        "is not an explicit partial",
    )


def collected_checks(checks: Checks, collected: Completeness | None) -> list[dict[str, Any]]:
    """`announced_matches` over the collect's counts: one result, or none when it is off."""
    wanted = checks.announced_matches
    if wanted is None:
        # A partial collect the user asked for reads less than announced by design.
        wanted = (
            collected is not None
            and collected.announced is not None
            and collected.outcome != "partial"
        )
    if not wanted:
        return []
    entry: dict[str, Any] = {"check": "announced_matches"}
    if collected is None or collected.announced is None:
        # Asked for explicitly but nothing to compare: not a pass.
        observed = "no collected counts" if collected is None else "the source announced none"
        return [{**entry, "passed": False, "observed": observed, "expected": "announced"}]
    return [
        {
            **entry,
            "passed": collected.read == collected.announced,
            "observed": collected.read,
            "expected": collected.announced,
            "announced_by": collected.announced_by,
        }
    ]


def _literal(value: Any, dtype: pl.DataType) -> pl.Expr:
    # Compare in the column's type, so "2026-01-01" bounds a timestamp column.
    if isinstance(value, str) and dtype.is_temporal():
        return (
            pl.lit(value).str.to_datetime(time_zone=getattr(dtype, "time_zone", None)).cast(dtype)
        )
    return pl.lit(value).cast(dtype)


def run_checks(frame: pl.LazyFrame, checks: Checks) -> tuple[int, list[dict[str, Any]]]:
    """The row count and one result per check (`check`, `passed`, `observed`, `expected`)."""
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = [pl.len().alias("rows")]
    results: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], str]] = []

    def missing(check: str, columns: list[str], expected: Any) -> bool:
        absent = [c for c in columns if c not in schema]
        if absent and not schema:
            # Nothing collected (an incremental run with nothing new): no batch, so no columns
            # either. A column check holds over no rows; `row_count_min` is what refuses them.
            results.append(
                {
                    "check": check,
                    "column": columns[0] if len(columns) == 1 else columns,
                    "passed": True,
                    "observed": "no rows",
                    "expected": expected,
                }
            )
        elif absent:
            results.append(
                {
                    "check": check,
                    "column": columns[0] if len(columns) == 1 else columns,
                    "passed": False,
                    "observed": f"missing column {', '.join(absent)}",
                    "expected": expected,
                }
            )
        return bool(absent)

    for index, column in enumerate(checks.not_null):
        if not missing("not_null", [column], 0):
            exprs.append(pl.col(column).null_count().alias(f"nn{index}"))
            entry = {"check": "not_null", "column": column, "expected": 0}
            pending.append((entry, f"nn{index}"))
    for index, spec in enumerate(checks.unique):
        columns = [spec] if isinstance(spec, str) else list(spec)
        if not missing("unique", columns, 0):
            key = pl.struct(columns) if len(columns) > 1 else pl.col(columns[0])
            exprs.append((pl.len() - key.n_unique()).alias(f"uq{index}"))
            entry = {
                "check": "unique",
                "column": columns[0] if len(columns) == 1 else columns,
                "expected": 0,
            }
            pending.append((entry, f"uq{index}"))
    for index, (column, bounds) in enumerate(checks.ranges.items()):
        expected = {"min": bounds.min, "max": bounds.max}
        if missing("range", [column], expected):
            continue
        dtype = schema[column]
        outside = pl.lit(False)
        if bounds.min is not None:
            outside = outside | (pl.col(column) < _literal(bounds.min, dtype))
        if bounds.max is not None:
            outside = outside | (pl.col(column) > _literal(bounds.max, dtype))
        exprs += [
            outside.fill_null(False).sum().alias(f"rg{index}"),
            pl.col(column).min().alias(f"rgmin{index}"),
            pl.col(column).max().alias(f"rgmax{index}"),
        ]
        pending.append(({"check": "range", "column": column, "expected": expected}, str(index)))
    values = frame.select(exprs).collect(engine="streaming").row(0, named=True)
    rows = int(values["rows"])
    if checks.row_count_min is not None:
        results.insert(
            0,
            {
                "check": "row_count_min",
                "passed": rows >= checks.row_count_min,
                "observed": rows,
                "expected": checks.row_count_min,
            },
        )
    if checks.row_count_max is not None:
        results.append(
            {
                "check": "row_count_max",
                "passed": rows <= checks.row_count_max,
                "observed": rows,
                "expected": checks.row_count_max,
            }
        )
    for entry, name in pending:
        if entry["check"] == "range":
            failures = int(values[f"rg{name}"])
            entry["observed"] = {
                "outside": failures,
                "min": values[f"rgmin{name}"],
                "max": values[f"rgmax{name}"],
            }
        else:
            failures = int(values[name])
            entry["observed"] = failures
        entry["passed"] = failures == 0
        results.append(entry)
    return rows, results
