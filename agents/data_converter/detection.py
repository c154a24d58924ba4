"""Recognising a file's format from its first bytes, and the dialect of delimited text."""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from agents.base.actions import AgentError

SAMPLE_BYTES = 64 * 1024
_SNIFF_CHARS = 16 * 1024
FORMATS = ("csv", "tsv", "json", "ndjson", "parquet", "xml", "avro", "excel")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xml": "xml",
    ".avro": "avro",
    ".xlsx": "excel",
    ".xlsm": "excel",
}


@dataclass
class Dialect:
    delimiter: str
    quotechar: str
    header: bool


@dataclass
class Detection:
    format: str
    encoding: str | None
    dialect: Dialect | None
    evidence: str  # "magic bytes", "content" or "extension"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form returned by `detect`."""
        return asdict(self)


def _encoding(sample: bytes) -> str:
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    try:
        # The sample may end mid-character: an incremental decoder tolerates that.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _text(sample: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(sample, final=False).lstrip("\ufeff")


def _first_line_is_json(text: str) -> bool:
    line = text.split("\n", 1)[0].strip()
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _dialect(text: str, extension_format: str | None) -> Dialect:
    # Sniff whole lines only (a cut-off last line would mislead the sniffer), and not too many:
    # the sniffer's regular expressions slow down on long samples.
    text = text[:_SNIFF_CHARS]
    lines = text[: text.rfind("\n")] if "\n" in text else text
    sniffer = csv.Sniffer()
    try:
        sniffed = sniffer.sniff(lines, delimiters=",\t;|")
        delimiter, quotechar = sniffed.delimiter, sniffed.quotechar or '"'
    except csv.Error:
        # One column, or too little text to tell: trust the extension.
        delimiter, quotechar = ("\t" if extension_format == "tsv" else ","), '"'
    try:
        header = sniffer.has_header(lines)
    except csv.Error:
        header = True
    first = next(csv.reader(io.StringIO(lines), delimiter=delimiter, quotechar=quotechar), [])
    if not header and first and all(cell and not _numeric(cell) for cell in first):
        # Sniffer's header test needs typed columns; all-text files usually have a header too.
        header = True
    return Dialect(delimiter=delimiter, quotechar=quotechar, header=header)


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _zip_format(location: str) -> str | None:
    with fsspec.open(location, "rb") as handle, zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
    return "excel" if "xl/workbook.xml" in names else None


def detect_sample(sample: bytes, location: str) -> Detection:
    """The format of a file from its first bytes (`location` gives the extension hint)."""
    suffix = "." + location.rsplit(".", 1)[-1].lower() if "." in location.rsplit("/", 1)[-1] else ""
    by_extension = _EXTENSIONS.get(suffix)
    if sample.startswith(b"PAR1"):
        return Detection("parquet", None, None, "magic bytes")
    if sample.startswith(b"Obj\x01"):
        return Detection("avro", None, None, "magic bytes")
    if sample.startswith(b"PK\x03\x04"):
        if _zip_format(location) == "excel":
            return Detection("excel", None, None, "magic bytes")
        raise AgentError(
            f"{location!r} is a zip archive, not a data file", code="unsupported_format"
        )
    if sample.startswith(b"\xd0\xcf\x11\xe0"):
        raise AgentError(
            f"{location!r} is a legacy .xls workbook; save it as .xlsx", code="unsupported_format"
        )
    if sample.startswith(b"\x1f\x8b"):
        raise AgentError(
            f"{location!r} is gzip-compressed; unpack it first", code="unsupported_format"
        )
    if not sample.strip():
        raise AgentError(f"{location!r} is empty", code="empty_input")
    encoding = _encoding(sample)
    text = _text(sample, encoding).lstrip()
    if text.startswith("<"):
        return Detection("xml", encoding, None, "content")
    if text.startswith("["):
        return Detection("json", encoding, None, "content")
    if text.startswith("{"):
        fmt = "ndjson" if _first_line_is_json(text) else "json"
        return Detection(fmt, encoding, None, "content")
    dialect = _dialect(text, by_extension)
    fmt = "tsv" if dialect.delimiter == "\t" else "csv"
    return Detection(fmt, encoding, dialect, "content")


def detect_file(location: str) -> Detection:
    """Read the head of `location` and recognise its format."""
    with fsspec.open(location, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    return detect_sample(sample, location)


def delimited_dialect(location: str, fmt: str) -> Detection:
    """The dialect of a file the caller says is csv or tsv (the delimiter follows the format)."""
    detection = detect_file(location)
    dialect = detection.dialect or Dialect(",", '"', True)
    if fmt == "tsv":
        dialect.delimiter = "\t"
    elif dialect.delimiter == "\t":
        dialect.delimiter = ","
    return Detection(fmt, detection.encoding or "utf-8", dialect, "caller")
