"""Publishing a Parquet input as it is, when converting it would only re-encode the same data.

The PostgreSQL collector (like any Arrow writer) stages Parquet whose columns already have
their final types; decoding and re-encoding every row of such a file changes nothing but the
byte layout, and it was most of a PostgreSQL ingest's convert step. A Parquet input is
published byte for byte (copied into the scratch folder, then renamed or uploaded into place
like every other output) when all of these hold:

- the conversion's plan for it is the identity: known_schema, contract and inference (over a
  sample of its text columns, as in a full conversion) cast, add, drop and reorder no column
  and drop no row, so no value can violate the contract;
- every column has a flat type the converter would write as the same polars type: integers,
  float32/64, booleans, text, binary, date32, times, timestamps and durations (ms/us/ns),
  decimal128; not INT96 timestamps, dictionaries, nested or extension types;
- every column chunk is compressed with the requested codec (otherwise the file is
  re-encoded: the caller asked for that codec, and the collector's zstd is the default);
- `nested` is `keep` and the caller did not ask to re-encode (`rewrite_parquet`).

Every value is still decoded once by polars, the reader every later step uses, without
writing anything. A file that fails that check (or whose footer pyarrow cannot read) goes
through the full conversion, which refuses it with the 422 naming the file it always gave.
On an s3:// DATA_ROOT the input has been downloaded for that check, so the checked bytes
are uploaded (what the manifest's sha256 names), not copied server-side.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from agents.data_converter.contracts import (
    ContractMode,
    ContractViolation,
    Inference,
    Plan,
    plan_columns,
)

# The requested codec -> the names it has in a Parquet footer (polars writes lz4 as LZ4_RAW).
CODECS = {
    "zstd": {"ZSTD"},
    "snappy": {"SNAPPY"},
    "gzip": {"GZIP"},
    "lz4": {"LZ4", "LZ4_RAW"},
    "uncompressed": {"UNCOMPRESSED"},
}


def _final(arrow_type: pa.DataType) -> bool:
    """Whether polars reads and writes a column of this Arrow type as the same polars type."""
    t = pa.types
    if t.is_timestamp(arrow_type) or t.is_duration(arrow_type):
        return bool(arrow_type.unit != "s")
    return bool(
        t.is_integer(arrow_type)
        or t.is_float32(arrow_type)
        or t.is_float64(arrow_type)
        or t.is_boolean(arrow_type)
        or t.is_string(arrow_type)
        or t.is_large_string(arrow_type)
        or t.is_binary(arrow_type)
        or t.is_large_binary(arrow_type)
        or t.is_date32(arrow_type)
        or t.is_time(arrow_type)
        or t.is_decimal128(arrow_type)
    )


def _layout_kept(metadata: pq.FileMetaData, compression: str) -> bool:
    """Flat final types, no INT96, and every column chunk in the requested codec."""
    arrow = metadata.schema.to_arrow_schema()
    if len(set(arrow.names)) != len(arrow.names) or not arrow.names:
        return False
    if metadata.num_columns != len(arrow.names) or not all(_final(f.type) for f in arrow):
        return False
    if any(metadata.schema.column(i).physical_type == "INT96" for i in range(len(arrow))):
        return False
    codecs = CODECS[compression]
    return all(
        metadata.row_group(g).column(c).compression in codecs
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    )


def identity_plan(
    path: str,
    *,
    known: dict[str, pl.DataType] | None,
    mode: ContractMode,
    infer: Inference,
    compression: str,
    sample_rows: int,
) -> Plan | None:
    """The conversion's plan for the Parquet file at `path` if it is the identity, else None.

    Reads the footer, and the first `sample_rows` values of the text columns when inference
    may retype them. A plan the contract refuses is None too: the full conversion reports it.
    """
    if not _layout_kept(pq.read_metadata(path), compression):
        return None
    frame = pl.scan_parquet(path)
    schema = frame.collect_schema()
    if known is not None:
        if any(column not in schema or schema[column] != t for column, t in known.items()):
            return None  # a cast or a column added as nulls
        # The plan puts the known columns first, in the known schema's order.
        if list(schema)[: len(known)] != list(known):
            return None
    text = [column for column, dtype in schema.items() if dtype == pl.String]
    # Only text columns are sampled: with every known column already of its type, the plan
    # looks at no other column's values.
    sample = frame.select(text).head(sample_rows).collect() if text and infer != "none" else None
    try:
        plan = plan_columns(
            schema,
            sample if sample is not None else pl.DataFrame(),
            known=known,
            mode=mode,
            infer=infer,
            keep_as_is=set(),
        )
    except ContractViolation:
        return None
    if plan.coercions or plan.drop_rows_with or plan.discarded_columns or plan.missing_columns:
        return None
    return plan


def verify(path: str) -> None:
    """Decode every value of the file once (nothing is written); raises what the reader raises."""
    pl.scan_parquet(path).select(pl.all().null_count()).collect(engine="streaming")
