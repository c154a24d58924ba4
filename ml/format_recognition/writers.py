"""The real writers behind the training files: the csv module, pyarrow, polars, fastavro, lxml,
openpyxl; tables of random shapes and column kinds.

Every sample is seeded: the same seed gives the same files. Tables have random shapes and
column kinds (ids with leading zeros, floats, words, dates, booleans, nulls); text files are
written in many dialects and encodings; some files are truncated, corrupted, compressed, or
named with a wrong extension (the name is a weak hint the model must learn to doubt).
"""

from __future__ import annotations

import csv
import io
import json
import random
import struct
import zipfile
from datetime import date, timedelta
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

from ml.format_recognition.recognition import DialectGuess

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "order",
    "customer",
    "amount",
    "city",
    "river",
    "blue",
    "green",
    "station",
    "market",
    "price",
    "total",
    "north",
    "south",
    "value",
    "report",
    "müller",
    "café",
    "zoë",
    "naïve",
    "straße",
    "señor",
    "data",
    "file",
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "that",
    "be",
    "are",
    "not",
    "have",
]


def table(rng: random.Random, min_columns: int = 1) -> list[dict[str, Any]]:
    """A random table: 1-400 rows of 1-12 columns of mixed kinds."""
    kinds = ["int", "float", "word", "date", "bool", "code", "phrase", "null"]
    columns = {
        f"{rng.choice(WORDS)}_{i}" if rng.random() < 0.7 else rng.choice(WORDS).title() + str(i): (
            rng.choice(kinds)
        )
        for i in range(rng.randint(min_columns, 12))
    }
    rows = []
    start = date(2020, 1, 1)
    for r in range(rng.choice([1, 3, 10, 40, 120, 400])):
        row: dict[str, Any] = {}
        for name, kind in columns.items():
            if kind != "null" and rng.random() < 0.05:
                row[name] = None
            elif kind == "int":
                row[name] = rng.randint(-1000, 10 ** rng.randint(1, 9))
            elif kind == "float":
                row[name] = round(rng.uniform(-1e4, 1e4), rng.randint(0, 4))
            elif kind == "word":
                row[name] = rng.choice(WORDS)
            elif kind == "date":
                row[name] = (start + timedelta(days=r * 3 + rng.randint(0, 9))).isoformat()
            elif kind == "bool":
                row[name] = rng.random() < 0.5
            elif kind == "code":
                row[name] = f"{rng.randint(0, 99999):05d}"
            elif kind == "phrase":
                row[name] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
            else:
                row[name] = None
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    return "" if value is None else value


def delimited(rng: random.Random, delimiter: str) -> tuple[bytes, DialectGuess, str]:
    """A table written by the csv module: its bytes, its dialect and its encoding.

    Only comma-separated tables have one column: with no delimiter in sight, the others
    would be indistinguishable from them.
    """
    rows = table(rng, min_columns=1 if delimiter == "," else 2)
    header = rng.random() < 0.8
    quote = '"' if rng.random() < 0.85 else "'"
    quoting = rng.choice([csv.QUOTE_MINIMAL] * 4 + [csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        quotechar=quote,
        quoting=quoting,  # type: ignore[arg-type]
        lineterminator=rng.choice(["\n", "\n", "\r\n", "\r"]),
    )
    names = list(rows[0])
    if header:
        writer.writerow(names)
    writer.writerows([[_cell(row[n]) for n in names] for row in rows])
    encoding = rng.choice(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "latin-1", "cp1252"])
    data = buffer.getvalue().encode(encoding, errors="replace")
    return data, DialectGuess(delimiter, quote, header), encoding


def _records(rng: random.Random) -> list[dict[str, Any]]:
    rows = table(rng)
    if rng.random() < 0.3:  # nested values, as APIs return them
        for row in rows:
            row["meta"] = {"tags": [rng.choice(WORDS)], "n": rng.randint(0, 9)}
    return rows


def json_bytes(rng: random.Random) -> bytes:
    """A JSON document: an array of records, records under a key, or one object."""
    rows = _records(rng)
    doc: Any = rows
    shape = rng.random()
    if shape < 0.3:
        doc = {rng.choice(["data", "items", "results", "records"]): rows, "count": len(rows)}
    elif shape < 0.4:
        doc = rows[0]
    indent = rng.choice([None, None, 2, 4, "\t"])
    return json.dumps(doc, indent=indent, ensure_ascii=rng.random() < 0.5).encode()


def ndjson_bytes(rng: random.Random) -> bytes:
    """One JSON object per line."""
    ending = rng.choice(["\n", "\n", "\r\n"])
    return ending.join(json.dumps(r) for r in _records(rng)).encode() + ending.encode()


def _arrow(rng: random.Random) -> pa.Table:
    data = pa.Table.from_pylist(table(rng))
    # ORC and Avro have no all-null type: such columns are written as strings.
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in data.schema]
    return data.cast(pa.schema(fields))


def parquet_bytes(rng: random.Random) -> bytes:
    """A Parquet file from pyarrow or polars, with a random codec."""
    buffer = io.BytesIO()
    codec = rng.choice(["snappy", "zstd", "gzip", "none"])
    if rng.random() < 0.5:
        pq.write_table(_arrow(rng), buffer, compression=codec)
    else:
        pl.DataFrame(table(rng), infer_schema_length=None).write_parquet(
            buffer,
            compression="uncompressed" if codec == "none" else codec,  # type: ignore[arg-type]
        )
    return buffer.getvalue()


def arrow_bytes(rng: random.Random) -> bytes:
    """Arrow IPC: the file format, feather (v1 or v2), or the stream format."""
    buffer = io.BytesIO()
    data = _arrow(rng)
    kind = rng.random()
    if kind < 0.35:
        with ipc.new_file(buffer, data.schema) as writer:
            writer.write_table(data)
    elif kind < 0.7:
        feather.write_feather(data, buffer, version=2 if rng.random() < 0.8 else 1)
    else:
        with ipc.new_stream(buffer, data.schema) as writer:
            writer.write_table(data)
    return buffer.getvalue()


def orc_bytes(rng: random.Random) -> bytes:
    """An ORC file from pyarrow."""
    buffer = io.BytesIO()
    orc.write_table(_arrow(rng), buffer, compression=rng.choice(["zlib", "snappy", "zstd"]))
    return buffer.getvalue()


def avro_bytes(rng: random.Random) -> bytes:
    """An Avro container from fastavro (every field a nullable string or number)."""
    rows = table(rng)
    fields = [{"name": n.replace(" ", "_"), "type": ["null", "string"]} for n in rows[0]]
    schema = fastavro.parse_schema({"type": "record", "name": "Row", "fields": fields})
    buffer = io.BytesIO()
    records = [
        {n.replace(" ", "_"): None if v is None else str(v) for n, v in r.items()} for r in rows
    ]
    fastavro.writer(buffer, schema, records, codec=rng.choice(["null", "deflate"]))
    return buffer.getvalue()


def xml_bytes(rng: random.Random) -> bytes:
    """Records as XML elements (child elements or attributes), from lxml."""
    ns = "http://example.com/ns" if rng.random() < 0.2 else None
    root = etree.Element(f"{{{ns}}}rows" if ns else rng.choice(["rows", "data", "feed", "Export"]))
    for row in table(rng):
        record = etree.SubElement(root, rng.choice(["row", "record", "item"]))
        for key, value in row.items():
            key = key.replace(" ", "_")
            if rng.random() < 0.3:
                record.set(key, str(_cell(value)))
            else:
                etree.SubElement(record, key).text = str(_cell(value))
    return etree.tostring(
        root,
        xml_declaration=rng.random() < 0.7,
        encoding=rng.choice(["UTF-8", "UTF-8", "ISO-8859-1"]),
        pretty_print=rng.random() < 0.6,
    )


def xlsx_bytes(rng: random.Random) -> bytes:
    """A workbook from openpyxl."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    rows = table(rng)
    sheet.append(list(rows[0]))
    for row in rows[:200]:
        sheet.append([_cell(v) for v in row.values()])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def ods_bytes(rng: random.Random) -> bytes:
    """An OpenDocument spreadsheet: the zip layout ODF prescribes (mimetype first, stored)."""
    rows = table(rng)
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f"<table:table-cell><text:p>{_cell(v)}</text:p></table:table-cell>" for v in r.values()
        )
        + "</table:table-row>"
        for r in rows
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body>'
        f"<office:spreadsheet><table:table>{cells}</table:table></office:spreadsheet>"
        "</office:body></office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED
        )
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", "<manifest/>", zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def cfb_bytes(rng: random.Random, stream: str) -> bytes:
    """An OLE2 compound file's layout (header, a directory naming `stream`, sectors).

    Hand-made: no xls writer is installed. "Workbook" makes it a legacy Excel file,
    "WordDocument" a Word one (which is `other`).
    """
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
    )
    header += bytes(10) + struct.pack("<IIIIIII", 1, 1, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE)
    header = header.ljust(512, b"\xff")
    entries = b"".join(
        n.encode("utf-16-le").ljust(64, b"\x00") + bytes(64) for n in ("Root Entry", stream)
    )
    body = rng.randbytes(rng.randint(2, 40) * 512)
    if stream == "Workbook":
        body = b"\x09\x08\x10\x00\x00\x06\x05\x00" + body  # a BIFF8 BOF record
    at_end = rng.random() < 0.5
    return header + (body + entries if at_end else entries.ljust(512, b"\x00") + body)
