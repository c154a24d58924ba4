"""Opening any supported file as a polars LazyFrame, in bounded memory.

CSV, TSV and Parquet are scanned lazily by polars. JSON arrays and NDJSON go through DuckDB's
streaming JSON reader (agents.base.tabular.json_reader); XML (lxml iterparse), Avro
(fastavro) and Excel (openpyxl read-only) are read record by record into small staged Parquet
parts. Either way the result is a lazy
frame that the streaming engine can sink without holding the file in memory.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import fastavro
import openpyxl
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.orc as orc
import pyarrow.parquet as pq
from lxml import etree

from agents.base.actions import AgentError
from agents.base.tabular.detection import Detection
from agents.base.tabular.json_reader import read_json
from agents.base.tabular.text import eol_of, to_utf8

BATCH_ROWS = 50_000
CSV_INFER_ROWS = 10_000


def scan_delimited(
    path: str, detection: Detection, types: dict[str, pl.DataType] | None = None
) -> pl.LazyFrame:
    """A lazy scan of UTF-8 CSV/TSV text, every column read as the text it holds unless
    `types` names its type.

    polars never guesses (it would read the quoted `"08123"` as 8123): the converter decides
    the types, from the declared schema or its own inference over the text, and has polars'
    parser read the numbers and booleans it decided on (`types`), which is faster than casting.
    """
    dialect = detection.dialect
    assert dialect is not None
    return pl.scan_csv(
        path,
        separator=dialect.delimiter,
        quote_char=dialect.quotechar or None,
        has_header=dialect.header,
        eol_char=eol_of(detection),
        encoding="utf8",
        # Without a header polars names columns column_1, column_2, ...
        infer_schema=False,
        schema_overrides=types or None,
    )


def _kind(value: Any) -> str:
    """The family of a record value: values of one family share a column type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | decimal.Decimal):
        return "number"
    if isinstance(value, datetime.date | datetime.time):
        return "temporal"
    if isinstance(value, dict | list):
        return "nested"
    return type(value).__name__


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _frame(batch: list[dict[str, Any]], kinds: dict[str, set[str]]) -> pl.DataFrame:
    """The batch as a frame; a column mixing families (a number and a date in one Excel column)
    becomes text, each value written as its text, instead of polars' lossy supertype."""
    seen: dict[str, set[str]] = {}
    for record in batch:
        for column, value in record.items():
            if value is not None:
                seen.setdefault(column, set()).add(_kind(value))
    mixed = {c for c, k in seen.items() if len(k) > 1}
    if mixed:
        batch = [
            {c: _as_text(v) if c in mixed else v for c, v in record.items()} for record in batch
        ]
    for column, found in seen.items():
        kinds.setdefault(column, set()).update({"str"} if column in mixed else found)
    return pl.from_dicts(batch, infer_schema_length=None)


def _stage_records(
    records: Iterable[dict[str, Any]], workdir: str, stem: str, name: str, fmt: str
) -> pl.LazyFrame:
    """Write records in batches to Parquet parts; a lazy frame over all parts (schemas unified,
    a column whose families differ between parts read as text from every part)."""
    parts: list[str] = []
    kinds: dict[str, set[str]] = {}
    iterator = iter(records)
    for index in itertools.count():
        try:
            batch = list(itertools.islice(iterator, BATCH_ROWS))
        except AgentError:
            raise
        except Exception as exc:  # lxml, fastavro, openpyxl and zipfile each have their own
            raise AgentError(
                f"cannot read {name!r} as {fmt} (truncated or corrupt?): {exc}",
                code="parse_error",
            ) from exc
        if not batch:
            break
        part = os.path.join(workdir, f"{stem}-part-{index:05d}.parquet")
        _frame(batch, kinds).write_parquet(part)
        parts.append(part)
    if not parts:
        return pl.LazyFrame()
    mixed = [c for c, k in kinds.items() if len(k) > 1 and "nested" not in k]
    frames = []
    for part in parts:
        frame = pl.scan_parquet(part)
        present = [c for c in mixed if c in frame.collect_schema()]
        frames.append(frame.with_columns(pl.col(present).cast(pl.String)) if present else frame)
    return pl.concat(frames, how="diagonal_relaxed")


def _local_name(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else str(tag)


def _xml_records(path: str) -> Iterator[dict[str, Any]]:
    """Each child of the root element is a record: its attributes and child elements' text.

    A grandchild with children of its own becomes dotted columns (`address.city`).
    """
    depth = 0
    context = etree.iterparse(path, events=("start", "end"), huge_tree=True, resolve_entities=False)
    for event, element in context:
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if depth != 1:
            continue
        record: dict[str, Any] = {_local_name(k): v for k, v in element.attrib.items()}
        for child in element:
            _flatten_xml(child, _local_name(child.tag), record)
        if not len(element) and element.text and element.text.strip():
            record[_local_name(element.tag)] = element.text.strip()
        yield record
        # Free what was parsed so far: memory stays bounded by one record.
        element.clear()
        parent = element.getparent()
        if parent is not None:
            while element.getprevious() is not None:
                del parent[0]


def _flatten_xml(element: Any, name: str, record: dict[str, Any]) -> None:
    if not isinstance(element.tag, str):  # comments, processing instructions
        return
    for key, value in element.attrib.items():
        record[f"{name}.{_local_name(key)}"] = value
    if len(element):
        for child in element:
            _flatten_xml(child, f"{name}.{_local_name(child.tag)}", record)
    else:
        text = (element.text or "").strip()
        record[name] = text if text else None


def _avro_records(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as handle:
        yield from fastavro.reader(handle)  # type: ignore[misc]


def _excel_records(path: str, sheet: str | None, header: bool) -> Iterator[dict[str, Any]]:
    # A file object, not a name: openpyxl refuses names without an Excel extension.
    with open(path, "rb") as handle:
        yield from _sheet_records(
            openpyxl.load_workbook(handle, read_only=True, data_only=True), sheet, header
        )


def _sheet_records(workbook: Any, sheet: str | None, header: bool) -> Iterator[dict[str, Any]]:
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise AgentError(
                f"no sheet {sheet!r}; sheets: {', '.join(workbook.sheetnames)}",
                code="sheet_not_found",
            )
        rows = (
            workbook[sheet].iter_rows(values_only=True)
            if sheet
            else workbook.worksheets[0].iter_rows(values_only=True)
        )
        names: list[str] | None = None
        for row in rows:
            if names is None:
                if header:
                    names = [
                        str(v) if v is not None else f"column_{i + 1}" for i, v in enumerate(row)
                    ]
                    continue
                names = [f"column_{i + 1}" for i in range(len(row))]
            if all(v is None for v in row):
                continue
            yield {
                names[i] if i < len(names) else f"column_{i + 1}": value
                for i, value in enumerate(row)
            }
    finally:
        workbook.close()


def _batches(path: str, fmt: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if fmt == "orc":
        orc_file = orc.ORCFile(path)
        stripes = (orc_file.read_stripe(i) for i in range(orc_file.nstripes))
        return orc_file.schema, (
            b for s in stripes for b in pa.Table.from_batches([s]).to_batches()
        )
    try:  # the Arrow IPC file format (and Feather v2), read one record batch at a time
        reader = ipc.open_file(path)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        pass
    try:
        stream = ipc.open_stream(path)
        return stream.schema, iter(stream)
    except pa.ArrowInvalid:
        table = feather.read_table(path)  # Feather v1
        return table.schema, iter(table.to_batches())


def _columnar(path: str, fmt: str, workdir: str, stem: str, name: str) -> pl.LazyFrame:
    """Arrow IPC / Feather and ORC, staged batch by batch into one Parquet file."""
    staged = os.path.join(workdir, f"{stem}-{fmt}.parquet")
    try:
        schema, batches = _batches(path, fmt)
        with pq.ParquetWriter(staged, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    except (pa.ArrowException, OSError) as exc:
        raise AgentError(
            f"cannot read {name!r} as {fmt} (truncated or corrupt?): {exc}", code="parse_error"
        ) from exc
    return pl.scan_parquet(staged)


def open_lazy(
    path: str,
    detection: Detection,
    workdir: str,
    *,
    sheet: str | None = None,
    name: str = "",
    types: dict[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """A lazy frame over the local file `path` in the detected format (`name`: the file as
    errors should call it). CSV and TSV columns are read as text, or as `types` names them
    (see `scan_delimited`)."""
    fmt = detection.format
    stem = uuid.uuid4().hex  # staged parts of several files may share `workdir`
    name = name or os.path.basename(path)
    if fmt in ("csv", "tsv"):
        utf8 = to_utf8(path, detection.encoding, workdir, name=name)
        return scan_delimited(utf8, detection, types)
    if fmt in ("json", "ndjson"):
        cr_lines = detection.cr_lines and fmt == "ndjson"
        utf8 = to_utf8(path, detection.encoding, workdir, cr_lines=cr_lines, name=name)
        return read_json(utf8, fmt, workdir, stem, name)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "xml":
        return _stage_records(_xml_records(path), workdir, stem, name, fmt)
    if fmt == "avro":
        return _stage_records(_avro_records(path), workdir, stem, name, fmt)
    if fmt in ("arrow", "orc"):
        return _columnar(path, fmt, workdir, stem, name)
    if fmt == "excel":
        header = detection.dialect.header if detection.dialect else True
        return _stage_records(_excel_records(path, sheet, header), workdir, stem, name, fmt)
    raise AgentError(f"unsupported format {fmt!r}", code="unsupported_format")
