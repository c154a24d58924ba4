"""Converting one file to Parquet: detect, plan the columns, stream through polars, publish.

Everything here is blocking (polars, file IO) and runs in a worker thread.
The common case is a single streaming pass (`sink_parquet`); a text column whose sampled values
looked like numbers or timestamps but which holds a value further down that does not parse
costs one diagnostic pass and one more write, with that column kept as text. A Parquet input
whose conversion would only re-encode it (types final, contract and inference change nothing,
the requested codec) is decoded once to check it and published byte for byte instead
(agents.data_converter.reuse).

A file that does not parse is a 422 (`parse_error`, `bad_encoding`, ...), never a crash: the
parsers' own errors are turned into an AgentError naming the file and, for delimited text and
UTF-8, the line or byte offset where it breaks (agents.base.tabular.text).
"""

from __future__ import annotations

import csv
import os
import posixpath
import shutil
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from lxml import etree

from agents.base.actions import AgentError
from agents.base.storage import DataRoot, sha256_of
from agents.base.tabular.detection import (
    BASELINE,
    BINARY_FORMATS,
    Detection,
    detect,
)
from agents.base.tabular.inputs import local_copy, publish, scratch_dir
from agents.base.tabular.readers import CSV_INFER_ROWS, open_lazy
from agents.base.tabular.schema import schema_names, type_name
from agents.base.tabular.text import (
    byte_offset,
    invalid_utf8,
    is_utf8,
    malformed_row,
    to_utf8,
)
from agents.base.tabular.unnest import Unnested, unnest_file
from agents.data_converter import reuse
from agents.data_converter.contracts import (
    ContractMode,
    ContractViolation,
    Inference,
    Plan,
    describe_coercion,
    plan_columns,
)
from ml.slot import Decider

SAMPLE_ROWS = CSV_INFER_ROWS
Compression = Literal["zstd", "snappy", "gzip", "lz4", "uncompressed"]
Nested = Literal["keep", "unnest"]
# Formats without types of their own: inference may make numbers and booleans of their text.
_UNTYPED = ("csv", "tsv", "xml")
_BINARY = BINARY_FORMATS
# Types polars' CSV parser reads as it scans (dates and decimals are parsed by the plan).
_NATIVE = (
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Float32,
    pl.Float64,
    pl.Boolean,
)
# What the parsers raise on a malformed file (polars panics are BaseExceptions, not Exceptions).
PARSER_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.PolarsError,
    pl.exceptions.PanicException,
    pa.ArrowException,
    duckdb.Error,
    etree.LxmlError,
    zipfile.BadZipFile,
    csv.Error,
    UnicodeError,
    ValueError,
    EOFError,
    OverflowError,
)
# What deciding whether a Parquet file can be published as it is may raise (pyarrow's footer
# reader raises OSError on a corrupt footer): any of it sends the file to the full conversion.
_UNREADABLE: tuple[type[BaseException], ...] = (*PARSER_ERRORS, OSError)


@dataclass
class ConvertOptions:
    format: str  # "auto" or one of detection.FORMATS
    known: dict[str, pl.DataType] | None
    mode: ContractMode
    infer_types: bool
    sheet: str | None
    compression: Compression
    decider: Decider = BASELINE  # what recognises a file's format when `format` is "auto"
    encoding: str | None = None  # the caller's text encoding, over the detected one
    nested: Nested = "keep"  # "unnest": child tables (agents.base.tabular.unnest)
    max_nesting: int = 5
    primary_key: list[str] = field(default_factory=list)  # what `_row_id` is derived from
    rewrite_parquet: bool = False  # re-encode Parquet that could be published as is (reuse)

    def inference(self, fmt: str) -> Inference:
        """What inference may do to the text columns of a file in `fmt`."""
        if not self.infer_types:
            return "none"
        return "all" if fmt in _UNTYPED else "temporal"


def detect_or_refuse(location: str, name: str, decider: Decider = BASELINE) -> Detection:
    """`detect` for the `detect` action: a file whose ends do not parse is a 422, not a crash."""
    try:
        return detect(location, "auto", None, decider)
    except PARSER_ERRORS as exc:
        raise _parse_error(name, exc) from exc


def _explain(local: str, detection: Detection, source_uri: str) -> AgentError | None:
    """Where a text file that did not parse breaks, if it can be found."""
    if detection.format not in ("csv", "tsv", "ndjson", "json"):
        return None
    newline = b"\r" if detection.cr_lines else b"\n"
    if is_utf8(detection.encoding) and (bad := invalid_utf8(local, source_uri, newline)):
        return bad
    if detection.format in ("csv", "tsv"):
        return malformed_row(local, detection, source_uri)
    return None


def _parse_error(
    source_uri: str,
    exc: BaseException,
    local: str | None = None,
    detection: Detection | None = None,
) -> AgentError:
    if local is not None and detection is not None:
        explained = _explain(local, detection, source_uri)
        if explained is not None:
            return explained
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    offset = byte_offset(text)
    where = f" (near byte offset {offset})" if offset is not None else ""
    if detection is not None and detection.format in _BINARY:
        where += f"; the file is truncated or not valid {detection.format}"
    return AgentError(
        f"cannot convert {source_uri!r}: {message}{where}",
        code="parse_error",
        details={"byte_offset": offset} if offset is not None else None,
    )


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


def _parsed_natively(plan: Plan) -> dict[str, pl.DataType]:
    """The planned text-to-number/boolean coercions polars' CSV parser can do itself."""
    return {
        column: coercion.target
        for column, coercion in plan.coercions.items()
        if isinstance(coercion.target, _NATIVE)
    }


def _write(
    local: str, detection: Detection, work: str, options: ConvertOptions, source_uri: str
) -> tuple[str, Plan, dict[str, Any], dict[str, dict[str, Any]]]:
    """Write `local` as Parquet in `work`: the file written, the plan used, the failure counts,
    the soft failures.

    Delimited text is planned from its text; the columns the plan makes numbers or booleans
    are then parsed by polars' CSV reader (one pass). A value that parser refuses sends the
    file down the text path: every column read as text and cast by the plan, which counts
    each value that does not convert and, for inferred types, keeps that column as text.

    Each attempt writes a file of its own: a streaming sink whose query failed may still be
    writing when the error reaches us, and a second attempt on the same path interleaves
    with it (a corrupt Parquet file, seen under load).
    """
    delimited = detection.format in ("csv", "tsv")
    if delimited:  # transcoded once, for both paths
        local = to_utf8(local, detection.encoding, work, name=source_uri)
        detection = replace(detection, encoding="utf-8")
    try:
        lf = open_lazy(local, detection, work, sheet=options.sheet, name=source_uri)
        schema = lf.collect_schema()
        sample = lf.head(SAMPLE_ROWS).collect()
    except PARSER_ERRORS as exc:
        raise _parse_error(source_uri, exc, local, detection) from exc
    keep_as_is: set[str] = set()
    soft_failures: dict[str, dict[str, Any]] = {}
    inferences: dict[str, pl.DataType | None] = {}  # inferred once, however often planned

    def plan_for(frame_schema: pl.Schema) -> Plan:
        try:
            return plan_columns(
                frame_schema,
                sample,
                known=options.known,
                mode=options.mode,
                infer=options.inference(detection.format),
                keep_as_is=keep_as_is,
                inferences=inferences,
            )
        except ContractViolation as exc:
            raise AgentError(str(exc), code="schema_contract_violation") from exc

    plan = plan_for(schema)
    if delimited and (native := _parsed_natively(plan)):
        typed = open_lazy(local, detection, work, name=source_uri, types=native)
        typed_plan = plan_for(typed.collect_schema())
        out = os.path.join(work, "typed.parquet")
        try:
            return (
                out,
                typed_plan,
                _run(typed, typed_plan, options.mode, out, options.compression),
                {},
            )
        except PARSER_ERRORS:
            pass  # a value the parser refuses (or a malformed row): the text path tells which
    for attempt in range(6):
        out = os.path.join(work, f"text-{attempt}.parquet")
        try:
            counts = _run(lf, plan, options.mode, out, options.compression)
            return out, plan, counts, soft_failures
        except PARSER_ERRORS as exc:
            failing = _diagnose(lf, plan)
            if not failing:
                raise _parse_error(source_uri, exc, local, detection) from exc
            soft_failures.update(failing)
            keep_as_is |= set(failing)
            plan = plan_for(schema)
    raise AgentError(f"cannot convert {source_uri!r}: too many retries", code="parse_error")


def _reuse(
    local: str, detection: Detection, work: str, options: ConvertOptions, source_uri: str
) -> tuple[str, Plan] | None:
    """A copy of a Parquet input whose conversion would change nothing but its encoding, and
    the (identity) plan; None when it must be converted (agents.data_converter.reuse)."""
    if detection.format != "parquet" or options.nested != "keep" or options.rewrite_parquet:
        return None
    try:
        plan = reuse.identity_plan(
            local,
            known=options.known,
            mode=options.mode,
            infer=options.inference(detection.format),
            compression=options.compression,
            sample_rows=SAMPLE_ROWS,
        )
        if plan is None:
            return None
        reuse.verify(local)
    except _UNREADABLE:
        # A file that does not read: the full conversion fails on it and says where, as ever.
        return None
    # A copy, never a link: the output stays as published whatever later happens to the input.
    out = os.path.join(work, "reused.parquet")
    shutil.copyfile(local, out)
    return out, plan


def convert_file(
    location: str, *, source_uri: str, root: DataRoot, target: str, options: ConvertOptions
) -> dict[str, Any]:
    """Convert the file at `location` into Parquet at `target`; its manifest and report."""
    with scratch_dir(root) as work, local_copy(location, work) as local:
        if os.path.getsize(local) == 0:
            raise AgentError(f"{source_uri!r} is empty", code="empty_input")
        try:
            detection = detect(
                local, options.format, options.sheet, options.decider, options.encoding
            )
        except PARSER_ERRORS as exc:
            raise _parse_error(source_uri, exc) from exc
        reused = _reuse(local, detection, work, options, source_uri)
        counts: dict[str, Any] = {}
        soft_failures: dict[str, dict[str, Any]] = {}
        if reused is not None:  # already what the conversion writes: published byte for byte
            out, plan = reused
        else:
            out, plan, counts, soft_failures = _write(local, detection, work, options, source_uri)
        report = _report(plan, counts, options.mode, soft_failures)
        if options.mode == "freeze" and report["coercion_failures"]:
            columns = ", ".join(sorted(report["coercion_failures"]))
            raise AgentError(
                f"{source_uri!r}: values in {columns} do not fit the known schema "
                "(contract: freeze); nothing was written",
                code="schema_contract_violation",
                details=report,
            )
        tables: dict[str, dict[str, Any]] | None = None
        if options.nested == "unnest":
            unnested = _unnest(out, work, target, options, source_uri)
            # Children first: a published root file names child files that are already there.
            tables = {
                path: _publish_manifest(
                    root, local, posixpath.join(posixpath.dirname(target), os.path.basename(local))
                )
                for path, local in unnested.children.items()
            }
            out = unnested.root
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
        **({"tables": tables} if tables is not None else {}),
    }


def _unnest(out: str, work: str, target: str, options: ConvertOptions, source_uri: str) -> Unnested:
    """The converted file split into root and child tables (convert's `nested: unnest`)."""
    stem = posixpath.basename(target).removesuffix(".parquet")
    folder = os.path.join(work, "unnested")
    os.makedirs(folder, exist_ok=True)
    try:
        return unnest_file(
            out,
            folder,
            stem,
            max_nesting=options.max_nesting,
            primary_key=options.primary_key,
            compression=options.compression,
        )
    except AgentError as exc:
        raise AgentError(f"{source_uri!r}: {exc.message}", code=exc.code) from exc
    except PARSER_ERRORS as exc:
        raise _parse_error(source_uri, exc) from exc


def _publish_manifest(root: DataRoot, local: str, target: str) -> dict[str, Any]:
    """Publish one child table's file; its manifest (uri, rows, bytes, sha256, schema)."""
    rows = pq.read_metadata(local).num_rows
    names = schema_names(pl.read_parquet_schema(local))
    digest, size = sha256_of(local)
    publish(root, local, target)
    return {"uri": root.uri(target), "rows": rows, "bytes": size, "sha256": digest, "schema": names}


def _diagnose(lf: pl.LazyFrame, plan: Plan) -> dict[str, dict[str, Any]]:
    """Which inferred (soft) coercions failed, with their counts; {} if none did."""
    soft = {c: k for c, k in plan.coercions.items() if k.soft}
    if not soft:
        return {}
    try:
        counts = lf.select([k.failed.sum().alias(c) for c, k in soft.items()]).collect(
            engine="streaming"
        )
    except PARSER_ERRORS:
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
