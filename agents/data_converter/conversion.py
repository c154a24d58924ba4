"""Converting one file to Parquet: detect, plan the columns, stream through polars, publish.

Everything here is blocking (polars, file IO) and runs in a worker thread.
The common case is a single streaming pass (`sink_parquet`); a text column whose sampled values
looked like numbers or timestamps but which holds a value further down that does not parse
costs one diagnostic pass and one more write, with that column kept as text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import pyarrow.parquet as pq

from agents.base.actions import AgentError
from agents.base.storage import DataRoot, sha256_of
from agents.data_converter.contracts import (
    ContractMode,
    ContractViolation,
    Plan,
    describe_coercion,
    plan_columns,
)
from agents.data_converter.detection import (
    BASELINE,
    Detection,
    delimited_dialect,
    detect_file,
    text_encoding,
)
from agents.data_converter.inputs import local_copy, publish, scratch_dir
from agents.data_converter.readers import CSV_INFER_ROWS, open_lazy
from agents.data_converter.schema import schema_names, type_name
from ml.slot import Decider

SAMPLE_ROWS = CSV_INFER_ROWS
Compression = Literal["zstd", "snappy", "gzip", "lz4", "uncompressed"]
_RESCANNABLE = ("csv", "tsv", "ndjson")


@dataclass
class ConvertOptions:
    format: str  # "auto" or one of detection.FORMATS
    known: dict[str, pl.DataType] | None
    mode: ContractMode
    infer_types: bool
    sheet: str | None
    compression: Compression
    decider: Decider = BASELINE  # what recognises a file's format when `format` is "auto"


def detect(
    location: str, fmt: str, sheet: str | None = None, decider: Decider = BASELINE
) -> Detection:
    """The detection for `location`, honouring a format the caller names."""
    if fmt == "auto":
        return detect_file(location, decider)
    if fmt in ("csv", "tsv"):
        return delimited_dialect(location, fmt)
    binary = ("parquet", "avro", "excel", "arrow", "orc")
    encoding = None if fmt in binary else text_encoding(location)
    return Detection(fmt, encoding, None, "caller")


def _parse_error(source_uri: str, exc: BaseException) -> AgentError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return AgentError(f"cannot convert {source_uri!r}: {message}", code="parse_error")


def _run(
    lf: pl.LazyFrame, plan: Plan, mode: ContractMode, out: str, compression: Compression
) -> dict:
    """Write the planned frame to `out`; the counts of failed values when a contract applies."""
    hard = plan.hard()
    drop: list[pl.Expr] = [pl.col(c).is_not_null() for c in plan.drop_rows_with]
    if mode == "discard_row":
        drop += [k.failed for k in hard.values()]
    final = lf.filter(~pl.any_horizontal(drop)) if drop else lf
    final = final.select(plan.columns)
    stats = [k.failed.sum().alias(c) for c, k in hard.items()]
    stats += [pl.col(c).is_not_null().sum().alias(f"new:{c}") for c in plan.discarded_columns]
    if not stats:
        final.sink_parquet(out, compression=compression)
        return {}
    sink = final.sink_parquet(out, compression=compression, lazy=True)
    assert sink is not None
    _, counts = pl.collect_all([sink, lf.select([*stats, pl.len().alias("__rows_in")])])
    return counts.row(0, named=True)


def _write(
    local: str, detection: Detection, work: str, out: str, options: ConvertOptions, source_uri: str
) -> tuple[Plan, dict[str, Any], dict[str, dict[str, Any]]]:
    """Write `local` as Parquet to `out`: the plan used, the failure counts, the soft failures.

    Retries with a text column kept as text when an inferred type fails further down the
    file, and with types inferred from the whole file when polars' guess from the head fails.
    """
    infer_rows: int | None = CSV_INFER_ROWS
    keep_as_is: set[str] = set()
    soft_failures: dict[str, dict[str, Any]] = {}
    opened: pl.LazyFrame | None = None
    rescannable = detection.format in _RESCANNABLE
    for _ in range(6):
        try:
            # Staged formats (JSON, XML, Avro, Excel) are read once; text is rescanned.
            if opened is None or rescannable:
                opened = open_lazy(
                    local, detection, work, sheet=options.sheet, infer_rows=infer_rows
                )
            lf = opened
            schema = lf.collect_schema()
            sample = lf.head(SAMPLE_ROWS).collect()
        except pl.exceptions.PolarsError as exc:
            if infer_rows is not None and rescannable:
                infer_rows = None
                continue
            raise _parse_error(source_uri, exc) from exc
        try:
            plan = plan_columns(
                schema,
                sample,
                known=options.known,
                mode=options.mode,
                infer=options.infer_types,
                keep_as_is=keep_as_is,
            )
        except ContractViolation as exc:
            raise AgentError(str(exc), code="schema_contract_violation") from exc
        try:
            return plan, _run(lf, plan, options.mode, out, options.compression), soft_failures
        except pl.exceptions.PolarsError as exc:
            failing = _diagnose(lf, plan)
            if failing:
                soft_failures.update(failing)
                keep_as_is |= set(failing)
            elif infer_rows is not None and rescannable:
                infer_rows = None
            else:
                raise _parse_error(source_uri, exc) from exc
    raise AgentError(f"cannot convert {source_uri!r}: too many retries", code="parse_error")


def convert_file(
    location: str, *, source_uri: str, root: DataRoot, target: str, options: ConvertOptions
) -> dict[str, Any]:
    """Convert the file at `location` into Parquet at `target`; its manifest and report."""
    with scratch_dir(root) as work, local_copy(location, work) as local:
        if os.path.getsize(local) == 0:
            raise AgentError(f"{source_uri!r} is empty", code="empty_input")
        detection = detect(local, options.format, options.sheet, options.decider)
        out = os.path.join(work, "out.parquet")
        plan, counts, soft_failures = _write(local, detection, work, out, options, source_uri)
        report = _report(plan, counts, options.mode, soft_failures)
        if options.mode == "freeze" and report["coercion_failures"]:
            columns = ", ".join(sorted(report["coercion_failures"]))
            raise AgentError(
                f"{source_uri!r}: values in {columns} do not fit the known schema "
                "(contract: freeze); nothing was written",
                code="schema_contract_violation",
                details=report,
            )
        metadata = pq.read_metadata(out)
        written = pl.read_parquet_schema(out)
        digest, size = sha256_of(out)
        publish(root, out, target)
    rows_in = counts.get("__rows_in")
    rejected = (rows_in - metadata.num_rows) if rows_in is not None else 0
    names = schema_names(written)
    report["schema_changes"]["type_changes"] = {
        column: {"known": type_name(dtype), "written": names[column]}
        for column, dtype in (options.known or {}).items()
        if column in names and names[column] != type_name(dtype)
    }
    return {
        "uri": root.uri(target),
        "rows": metadata.num_rows,
        "bytes": size,
        "sha256": digest,
        "schema": names,
        "source_uri": source_uri,
        "source_format": detection.format,
        "format_decided_by": detection.decided_by,
        "rejected_rows": rejected,
        **report,
    }


def _diagnose(lf: pl.LazyFrame, plan: Plan) -> dict[str, dict[str, Any]]:
    """Which inferred (soft) coercions failed, with their counts; {} if none did."""
    soft = {c: k for c, k in plan.coercions.items() if k.soft}
    if not soft:
        return {}
    try:
        counts = lf.select([k.failed.sum().alias(c) for c, k in soft.items()]).collect(
            engine="streaming"
        )
    except pl.exceptions.PolarsError:
        return {}
    return {
        c: describe_coercion(soft[c], int(counts[c][0]), None)
        for c in soft
        if int(counts[c][0]) > 0
    }


def _report(
    plan: Plan, counts: dict[str, Any], mode: ContractMode, soft: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    failures = dict(soft)
    for column, coercion in plan.hard().items():
        if counts.get(column):
            failures[column] = describe_coercion(coercion, int(counts[column]), mode)
    discarded = {c: int(counts.get(f"new:{c}") or 0) for c in plan.discarded_columns}
    return {
        "coercion_failures": failures,
        "schema_changes": {
            "new_columns": plan.new_columns,
            "missing_columns": plan.missing_columns,
            "discarded_columns": plan.discarded_columns,
            "discarded_values": {c: n for c, n in discarded.items() if n},
            "kept_original_type": sorted(soft),
        },
    }
