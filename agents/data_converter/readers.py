"""Opening any supported file as a polars LazyFrame, in bounded memory.

CSV, TSV, NDJSON and Parquet are scanned lazily by polars. JSON arrays go through DuckDB's
streaming JSON reader; XML (lxml iterparse), Avro (fastavro) and Excel (openpyxl read-only)
are read record by record into small staged Parquet parts. Either way the result is a lazy
frame that the streaming engine can sink without holding the file in memory.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb
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
from agents.data_converter.detection import Detection

BATCH_ROWS = 50_000
CSV_INFER_ROWS = 10_000
_UTF8 = ("utf-8", "utf-8-sig", "utf8", "ascii")


def to_utf8(path: str, encoding: str | None, workdir: str, *, cr_lines: bool = False) -> str:
    """`path` itself if it is UTF-8, else a streamed UTF-8 copy (polars and DuckDB read UTF-8).

    `cr_lines`: the file ends its lines with `\r` alone (old Mac files), which polars does not
    take for line ends; the copy ends them with `\n`.
    """
    if (not encoding or encoding.lower() in _UTF8) and not cr_lines:
        return path
    encoding = encoding or "utf-8"
    target = os.path.join(workdir, f"utf8-{uuid.uuid4().hex}-{os.path.basename(path)}")
    with (
        open(path, encoding=encoding, errors="strict", newline="") as source,
        open(target, "w", encoding="utf-8", newline="") as sink,
    ):
        try:
            while chunk := source.read(1 << 20):
                sink.write(chunk.replace("\r", "\n") if cr_lines else chunk)
        except UnicodeDecodeError as exc:
            raise AgentError(
                f"the file is not valid {encoding}: {exc}", code="bad_encoding"
            ) from exc
    return target


def scan_delimited(path: str, detection: Detection, *, infer_rows: int | None) -> pl.LazyFrame:
    """A lazy scan of CSV/TSV text; `infer_rows=None` infers types from the whole file."""
    dialect = detection.dialect
    assert dialect is not None
    return pl.scan_csv(
        path,
        separator=dialect.delimiter,
        quote_char=dialect.quotechar or None,
        has_header=dialect.header,
        infer_schema_length=infer_rows,
        encoding="utf8",
        # Without a header polars names columns column_1, column_2, ...
    )


def _stage_records(records: Iterable[dict[str, Any]], workdir: str, stem: str) -> pl.LazyFrame:
    """Write records in batches to Parquet parts; a lazy frame over all parts (schemas unified)."""
    parts: list[pl.LazyFrame] = []
    iterator = iter(records)
    for index in itertools.count():
        try:
            batch = list(itertools.islice(iterator, BATCH_ROWS))
        except AgentError:
            raise
        except Exception as exc:  # lxml, fastavro, openpyxl and zipfile each have their own
            raise AgentError(f"cannot parse the file: {exc}", code="parse_error") from exc
        if not batch:
            break
        part = os.path.join(workdir, f"{stem}-part-{index:05d}.parquet")
        pl.from_dicts(batch, infer_schema_length=None).write_parquet(part)
        parts.append(pl.scan_parquet(part))
    if not parts:
        return pl.LazyFrame()
    return pl.concat(parts, how="diagonal_relaxed")


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


def _json_array(path: str, workdir: str, stem: str) -> pl.LazyFrame:
    staged = os.path.join(workdir, f"{stem}-json.parquet")
    # DuckDB parses JSON arrays incrementally; its memory limit bounds what a huge file costs.
    config = {"memory_limit": "512MB", "threads": 2, "preserve_insertion_order": True}
    with duckdb.connect(config=config) as con:  # type: ignore[arg-type]
        try:
            con.execute(
                "COPY (SELECT * FROM read_json(?, format = 'auto')) TO '"
                + staged.replace("'", "''")
                + "' (FORMAT parquet)",
                [path],
            )
        except duckdb.Error as exc:
            raise AgentError(f"cannot read JSON: {exc}", code="parse_error") from exc
    return pl.scan_parquet(staged)


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


def _columnar(path: str, fmt: str, workdir: str, stem: str) -> pl.LazyFrame:
    """Arrow IPC / Feather and ORC, staged batch by batch into one Parquet file."""
    staged = os.path.join(workdir, f"{stem}-{fmt}.parquet")
    try:
        schema, batches = _batches(path, fmt)
        with pq.ParquetWriter(staged, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    except (pa.ArrowException, OSError) as exc:
        raise AgentError(f"cannot read {fmt}: {exc}", code="parse_error") from exc
    return pl.scan_parquet(staged)


def open_lazy(
    path: str,
    detection: Detection,
    workdir: str,
    *,
    sheet: str | None = None,
    infer_rows: int | None = CSV_INFER_ROWS,
) -> pl.LazyFrame:
    """A lazy frame over the local file `path` in the detected format."""
    fmt = detection.format
    stem = uuid.uuid4().hex  # staged parts of several files may share `workdir`
    if fmt in ("csv", "tsv"):
        utf8 = to_utf8(path, detection.encoding, workdir, cr_lines=detection.cr_lines)
        return scan_delimited(utf8, detection, infer_rows=infer_rows)
    if fmt == "ndjson":
        utf8 = to_utf8(path, detection.encoding, workdir, cr_lines=detection.cr_lines)
        return pl.scan_ndjson(utf8, infer_schema_length=infer_rows)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "json":
        return _json_array(to_utf8(path, detection.encoding, workdir), workdir, stem)
    if fmt == "xml":
        return _stage_records(_xml_records(path), workdir, stem)
    if fmt == "avro":
        return _stage_records(_avro_records(path), workdir, stem)
    if fmt in ("arrow", "orc"):
        return _columnar(path, fmt, workdir, stem)
    if fmt == "excel":
        header = detection.dialect.header if detection.dialect else True
        return _stage_records(_excel_records(path, sheet, header), workdir, stem)
    raise AgentError(f"unsupported format {fmt!r}", code="unsupported_format")
