"""Today's rule-based detection (the converter's until the model), as a recogniser: the baseline.

Magic bytes for the binary formats it knows, the first character for JSON and XML, and
`csv.Sniffer` for everything else. Two fixes over the rules as they were (issue 14): line
endings are normalised before sniffing (`\\r`-only files crashed it), and bytes that are not
text (NULs, control characters) are `other` instead of a crash. It never answers "this is not a
data file" for text, which is what the model is for.
"""

from __future__ import annotations

import csv
import io
import json

from ml.format_recognition.recognition import DialectGuess, Recognition
from ml.format_recognition.sniff import decode, encoding_of

_SNIFF_CHARS = 16 * 1024
_TEXT_CONTROL = {9, 10, 12, 13, 27}


def _binary(sample: bytes) -> bool:
    """Bytes no text file holds: NULs, or many control characters (the encoding aside)."""
    head = sample[:4096]
    if encoding_of(head).startswith(("utf-16", "utf-32")):
        return False
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROL)
    return b"\x00" in head or controls > 0.05 * max(len(head), 1)


def _first_line_is_json(text: str) -> bool:
    line = text.split("\n", 1)[0].strip()
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def sniff_dialect(text: str, extension: str) -> DialectGuess:
    """The converter's former dialect rules: csv.Sniffer, then its header test."""
    text = text[:_SNIFF_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    lines = text[: text.rfind("\n")] if "\n" in text else text
    sniffer = csv.Sniffer()
    try:
        sniffed = sniffer.sniff(lines, delimiters=",\t;|")
        delimiter, quotechar = sniffed.delimiter, sniffed.quotechar or '"'
    except csv.Error:
        # One column, or too little text to tell: trust the extension.
        delimiter, quotechar = ("\t" if extension in ("tsv", "tab") else ","), '"'
    try:
        header = sniffer.has_header(lines)
    except csv.Error:
        header = True
    try:
        first = next(csv.reader(io.StringIO(lines), delimiter=delimiter, quotechar=quotechar), [])
    except csv.Error:
        first = []
    if not header and first and all(cell and not _numeric(cell) for cell in first):
        header = True
    return DialectGuess(delimiter=delimiter, quotechar=quotechar, header=header)


def rules_recognize(head: bytes, tail: bytes, name: str | None) -> Recognition:
    """The baseline's answer for a file's first and last bytes."""
    extension = (name or "").rsplit(".", 1)[-1].lower() if name and "." in name else ""
    magic = [
        (b"PAR1", "parquet"),
        (b"Obj\x01", "avro"),
        (b"\xd0\xcf\x11\xe0", "xls"),
        (b"\x1f\x8b", "gzip"),
    ]
    for prefix, fmt in magic:
        if head.startswith(prefix):
            return Recognition(fmt, 1.0, [(fmt, 1.0)], evidence="magic bytes")
    if head.startswith(b"PK\x03\x04"):
        fmt = "xlsx" if b"xl/workbook.xml" in head or b"xl/workbook.xml" in tail else "zip"
        return Recognition(fmt, 1.0, [(fmt, 1.0)], evidence="magic bytes")
    if _binary(head):
        return Recognition("other", 1.0, [("other", 1.0)], evidence="content")
    encoding = encoding_of(head)
    text = decode(head, encoding).lstrip()
    fmt = ""
    if text.startswith("<"):
        fmt = "xml"
    elif text.startswith("["):
        fmt = "json"
    elif text.startswith("{"):
        fmt = "ndjson" if _first_line_is_json(text) else "json"
    if fmt:
        return Recognition(fmt, 1.0, [(fmt, 1.0)], encoding=encoding, evidence="content")
    dialect = sniff_dialect(text, extension)
    fmt = {",": "csv", "\t": "tsv"}.get(dialect.delimiter, "delimited")
    return Recognition(fmt, 1.0, [(fmt, 1.0)], encoding, dialect, evidence="content")


class RulesRecognizer:
    """The baseline predictor: the same `recognize` method as the model, over the rules."""

    version = "rules-1"

    def recognize(self, head: bytes, tail: bytes = b"", name: str | None = None) -> Recognition:
        """Recognise a file from its first and last bytes (and its name, for the extension)."""
        return rules_recognize(head, tail, name)
