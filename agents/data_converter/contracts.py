"""Column typing: inferring types of text columns and applying a schema contract.

A contract compares the incoming columns with the dataset's known schema (dlt's vocabulary):
- `evolve`: new columns are kept; a column whose values do not fit its known type keeps the
  type it has instead (the schema changes, no value is lost);
- `freeze`: a new column or a value that does not fit fails the conversion, nothing is written;
- `discard_row`: rows with a value that does not fit, or a value in a new column, are dropped;
- `discard_value`: such values become null and new columns are dropped.
Without a known schema (and for columns it does not name), inference types text columns by a
sample of their values (`Inference`); a value later in the file that does not parse keeps the
column text. What inference never does:
- turn a value with a leading zero (`08123`, `-007`, `00`) into a number: such a column stays
  text, so zip codes, phone numbers and codes keep their digits;
- turn an integer too long for int64 into a float (long ids stay text, digit for digit);
- type a declared column (its declared type wins) or any column with `infer_types: false`.
Whether a CSV value was quoted does not decide its type (many writers quote every field); the
rules above are what keep a quoted code a string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from agents.base.tabular.schema import type_name

ContractMode = Literal["evolve", "freeze", "discard_row", "discard_value"]
# What inference may make of a text column: "all" (numbers, booleans, dates, timestamps) for
# formats without types of their own (CSV, TSV, XML); "temporal" (dates and timestamps only)
# for typed formats, where a string is a string unless it holds the dates JSON cannot type;
# "none" when the user turned inference off.
Inference = Literal["all", "temporal", "none"]

_BOOLEANS = {"true": True, "false": False, "t": True, "f": False, "yes": True, "no": False}
_INTEGER = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


@dataclass
class Coercion:
    """One column converted to another type; `failed` flags values that did not convert."""

    column: str
    target: pl.DataType
    strict_expr: pl.Expr
    lenient_expr: pl.Expr
    failed: pl.Expr
    soft: bool  # on failure keep the column as it was, instead of applying the contract


@dataclass
class Plan:
    """How the columns of one input become the columns of the output."""

    columns: list[pl.Expr]
    coercions: dict[str, Coercion] = field(default_factory=dict)
    # Rows holding a value in one of these (discard_row on a new column) are dropped.
    drop_rows_with: list[str] = field(default_factory=list)
    new_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    discarded_columns: list[str] = field(default_factory=list)

    def hard(self) -> dict[str, Coercion]:
        """The coercions whose failures the contract acts on (and which are counted)."""
        return {c: k for c, k in self.coercions.items() if not k.soft}


class ContractViolation(Exception):
    """Data that a frozen contract refuses."""


# Explicit formats tried on the sample, ISO first. polars parses a column with a known format
# in streaming chunks; left to infer the format itself, it holds far more of the file in memory.
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
)
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y")
# A strict parse of every sampled value fails if it fails on the first few (polars infers a
# missing format from the first value either way); most text columns fail there, so those are
# tried first (a sample of 10,000 ids or names cost 40 ms per column and attempt).
_PROBE = 64


def _parses_all(values: pl.Series, parse: Callable[[pl.Series], pl.Series]) -> pl.Series | None:
    """`parse(values)` when it parses every value strictly, else None (first values first)."""
    try:
        if values.len() > _PROBE:
            parse(values.head(_PROBE))
        return parse(values)
    except pl.exceptions.PolarsError:
        return None


def temporal_format(
    sample: pl.Series | None, kind: type[pl.Date] | type[pl.Datetime]
) -> str | None:
    """The first listed format that parses every sampled value (None: let polars infer)."""
    if sample is None:
        return None
    values = sample.drop_nulls().str.strip_chars()
    if values.len() == 0:
        return None
    for fmt in _DATE_FORMATS if kind is pl.Date else _DATETIME_FORMATS:

        def parse(text: pl.Series, fmt: str = fmt) -> pl.Series:
            if kind is pl.Date:
                return text.str.to_date(fmt, strict=True)
            return text.str.to_datetime(fmt, strict=True, time_zone=_zone_of(fmt))

        if _parses_all(values, parse) is not None:
            return fmt
    return None


def _zone_of(fmt: str) -> str | None:
    # Text with offsets parses to UTC instants; text without stays naive.
    return "UTC" if "%#z" in fmt else None


def _number_type(stripped: pl.Series) -> pl.DataType | None:
    if stripped.str.contains(r"^[+-]?0\d").any():
        return None  # a leading zero is part of a code, not of a number
    try:
        stripped.cast(pl.Int64(), strict=True)
        return pl.Int64()
    except pl.exceptions.PolarsError:
        pass  # not every value is an integer: the wider types below may still hold them all
    if stripped.str.contains(r"^[+-]?\d{16,}$").any():
        return None  # an integer a float cannot hold exactly: an id, kept digit for digit
    try:
        stripped.cast(pl.Float64(), strict=True)
        return pl.Float64()
    except pl.exceptions.PolarsError:
        return None


def infer_text_type(values: pl.Series, *, numbers: bool = True) -> pl.DataType | None:
    """The type every sampled (non-null) text value parses as, if any; `numbers=False` tries
    dates and timestamps only."""
    values = values.drop_nulls()
    if values.len() == 0:
        return None
    stripped = values.str.strip_chars()
    if numbers:
        if (number := _number_type(stripped)) is not None:
            return number
        if stripped.str.to_lowercase().is_in(["true", "false"]).all():
            return pl.Boolean()
    short = stripped.str.len_chars().max() <= 10  # type: ignore[operator]
    if short and _parses_all(stripped, lambda v: v.str.to_date(strict=True)) is not None:
        return pl.Date()
    if fmt := temporal_format(values, pl.Datetime):
        return pl.Datetime("us", _zone_of(fmt))
    parsed = _parses_all(stripped, lambda v: v.str.to_datetime(strict=True))
    return parsed.dtype if parsed is not None else None


def _has_offsets(sample: pl.Series | None) -> bool:
    """Whether sampled timestamps carry a UTC offset or zone (parsed eagerly, which may guess)."""
    if sample is None or sample.drop_nulls().len() == 0:
        return False
    try:
        parsed = sample.drop_nulls().str.strip_chars().str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:
        return False
    return getattr(parsed.dtype, "time_zone", None) is not None


def _needs_strip(sample: pl.Series | None) -> bool:
    # Stripping costs a pass over the text: only when the sample shows padded values.
    if sample is None:
        return True
    values = sample.drop_nulls()
    return bool((values != values.str.strip_chars()).any())


def _from_text(
    col: pl.Expr, target: pl.DataType, sample: pl.Series | None, strict: bool
) -> pl.Expr:
    text = col.str.strip_chars() if _needs_strip(sample) else col
    if isinstance(target, pl.Datetime):
        unit = target.time_unit or "us"
        fmt = temporal_format(sample, pl.Datetime)
        # Lazy parsing needs the zone up front: offsets in the text are converted to UTC.
        zone = _zone_of(fmt) if fmt else ("UTC" if _has_offsets(sample) else None)
        parsed = text.str.to_datetime(fmt, time_unit=unit, time_zone=zone, strict=strict)
        if zone:
            if target.time_zone == zone:
                return parsed
            if target.time_zone:
                return parsed.dt.convert_time_zone(target.time_zone)
            return parsed.dt.replace_time_zone(None)
        return parsed.dt.replace_time_zone(target.time_zone) if target.time_zone else parsed
    if isinstance(target, pl.Date):
        return text.str.to_date(temporal_format(sample, pl.Date), strict=strict)
    if isinstance(target, pl.Boolean):
        mapping = _BOOLEANS | {"1": True, "0": False}
        lowered = text.str.to_lowercase()
        if strict:
            # replace_strict without a default raises on an unknown value.
            return lowered.replace_strict(mapping, return_dtype=pl.Boolean)
        return lowered.replace_strict(mapping, default=None, return_dtype=pl.Boolean)
    return text.cast(target, strict=strict)


def coerce(
    column: str, source: pl.DataType, target: pl.DataType, sample: pl.Series | None, *, soft: bool
) -> Coercion:
    """Expressions converting `column` from `source` to `target` (strict and lenient)."""
    col = pl.col(column)
    if source == pl.String and target != pl.String:
        strict = _from_text(col, target, sample, strict=True)
        lenient = _from_text(col, target, sample, strict=False)
    elif isinstance(source, pl.Float32 | pl.Float64) and isinstance(target, _INTEGER):
        # A fractional value does not fit an integer column: a failure, not a silent truncation.
        lenient = pl.when(col == col.round()).then(col.cast(target, strict=False))
        strict = col.cast(target, strict=True)
    else:
        strict = col.cast(target, strict=True)
        lenient = col.cast(target, strict=False)
    failed = col.is_not_null() & lenient.is_null()
    return Coercion(
        column=column,
        target=target,
        strict_expr=strict.alias(column),
        lenient_expr=lenient.alias(column),
        failed=failed,
        soft=soft,
    )


def plan_columns(
    schema: pl.Schema,
    sample: pl.DataFrame,
    *,
    known: dict[str, pl.DataType] | None,
    mode: ContractMode,
    infer: Inference,
    keep_as_is: set[str],
    inferences: dict[str, pl.DataType | None] | None = None,
) -> Plan:
    """Plan the output columns; `keep_as_is` lists columns whose soft coercion already failed,
    `inferences` remembers what inference made of each sampled column (for a second plan)."""
    plan = Plan(columns=[])
    exprs: dict[str, pl.Expr] = {}
    remembered = {} if inferences is None else inferences

    def inferred(column: str, dtype: pl.DataType) -> None:
        target = None
        if infer != "none" and dtype == pl.String:
            if column not in remembered:
                remembered[column] = infer_text_type(sample[column], numbers=infer == "all")
            target = remembered[column]
        if target is None or column in keep_as_is:
            exprs[column] = pl.col(column)
            return
        coercion = coerce(column, dtype, target, sample[column], soft=True)
        plan.coercions[column] = coercion
        exprs[column] = coercion.strict_expr

    for column, dtype in schema.items():
        if known is None:
            inferred(column, dtype)
        elif column in known:
            target = known[column]
            soft = mode == "evolve"
            if dtype == target or (soft and column in keep_as_is):
                exprs[column] = pl.col(column)
                continue
            coercion = coerce(column, dtype, target, sample[column], soft=soft)
            plan.coercions[column] = coercion
            exprs[column] = coercion.strict_expr if soft else coercion.lenient_expr
        else:
            plan.new_columns.append(column)
            if mode == "freeze":
                raise ContractViolation(
                    f"column {column!r} is not in the known schema (contract: freeze)"
                )
            if mode == "evolve":
                inferred(column, dtype)
            else:
                plan.discarded_columns.append(column)
                if mode == "discard_row":
                    plan.drop_rows_with.append(column)
    ordered: list[pl.Expr] = []
    for column, target in (known or {}).items():
        if column in exprs:
            ordered.append(exprs.pop(column))
        else:
            plan.missing_columns.append(column)
            ordered.append(pl.lit(None, dtype=target).alias(column))
    ordered.extend(expr for column, expr in exprs.items() if column not in plan.discarded_columns)
    plan.columns = ordered
    return plan


def describe_coercion(
    coercion: Coercion, count: int, mode: ContractMode | None
) -> dict[str, object]:
    """The report entry for a column with values that did not convert."""
    if coercion.soft:
        action = "kept_original_type"
    elif mode == "discard_row":
        action = "rows_discarded"
    else:
        action = "values_discarded"
    return {
        "count": count,
        "to": type_name(coercion.target),
        "reason": f"value does not parse as {type_name(coercion.target)}",
        "action": action,
    }
