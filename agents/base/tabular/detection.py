"""Recognising a file's format from its first and last bytes, and the dialect of delimited text.

The decision is the format-recognition model's (`ctx.models["format_recognition"].current`:
the registry's champion, or the rule-based baseline in ml.format_recognition.rules); this
module reads the file's ends, asks the decider, and turns its answer into what the readers
need, or into a clear 422: a file the decider cannot name with confidence, or names as
something that is not a data file the converter reads, is refused with the top guesses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import fsspec

from agents.base.actions import AgentError
from ml.format_recognition.recognition import COMPRESSED, UNKNOWN, Recognition
from ml.format_recognition.rules import RulesRecognizer
from ml.format_recognition.sniff import decode, dialect_of, encoding_of
from ml.slot import Decider

SAMPLE_BYTES = 64 * 1024
TAIL_BYTES = 1024
FORMATS = ("csv", "tsv", "json", "ndjson", "parquet", "xml", "avro", "excel", "arrow", "orc")
# Formats with no text encoding of their own.
BINARY_FORMATS = ("parquet", "avro", "excel", "arrow", "orc")
# The recogniser's classes the readers take, under the converter's format names.
_READABLE = {
    "csv": "csv",
    "tsv": "tsv",
    "delimited": "csv",  # delimited text is read by the CSV reader with its own delimiter
    "json": "json",
    "ndjson": "ndjson",
    "parquet": "parquet",
    "xml": "xml",
    "avro": "avro",
    "xlsx": "excel",
    "arrow": "arrow",
    "orc": "orc",
}
_REFUSALS = {
    "zip": "a zip archive, not a data file; unpack it first",
    "xls": "a legacy .xls workbook; save it as .xlsx",
    "ods": "an OpenDocument spreadsheet; save it as .xlsx or CSV",
    "html": "an HTML page, not a data file",
    "yaml": "YAML, which the converter does not read as a table",
    "text": "plain text, not a table",
    "other": "not a data file (code, an image, a document or binary data)",
}
BASELINE = Decider(RulesRecognizer(), "format_recognition", None, "baseline")


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
    evidence: str  # "model", "magic bytes", "content" or "caller"
    confidence: float | None = None
    top: list[dict[str, Any]] = field(default_factory=list)  # the decider's best guesses
    decided_by: dict[str, Any] | None = None  # the decider's {"model", "version", "source"}
    cr_lines: bool = False  # old Mac line endings (\r only): the readers translate them

    def to_dict(self) -> dict[str, Any]:
        """The JSON form returned by `detect`."""
        out = asdict(self)
        out.pop("cr_lines")
        return out


def read_ends(location: str) -> tuple[bytes, bytes]:
    """The first SAMPLE_BYTES and last TAIL_BYTES of `location` (the tail empty if it is small)."""
    with fsspec.open(location, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
        tail = b""
        if len(head) == SAMPLE_BYTES:
            size = handle.seek(0, 2)
            handle.seek(max(size - TAIL_BYTES, SAMPLE_BYTES))
            tail = handle.read(TAIL_BYTES)
    return head, tail or head[-TAIL_BYTES:]


def _cr_lines(head: bytes) -> bool:
    return b"\r" in head and b"\n" not in head


def _guesses(recognition: Recognition) -> str:
    return ", ".join(f"{f} {p:.2f}" for f, p in recognition.top) or "none"


def detect_sample(
    head: bytes, tail: bytes, location: str, decider: Decider = BASELINE
) -> Detection:
    """The format of a file from its ends, as `decider` recognises it; AgentError (422) if
    it is unsure or the file is not one the converter reads."""
    if not head.strip():
        raise AgentError(f"{location!r} is empty", code="empty_input")
    recognition: Recognition = decider.predictor.recognize(head, tail, location)
    top = [{"format": f, "confidence": round(p, 4)} for f, p in recognition.top]
    details = {"top": top, "decided_by": decider.provenance()}
    if recognition.format == UNKNOWN:
        raise AgentError(
            f"{location!r}: the format is not recognised with confidence "
            f"({recognition.confidence:.2f}); top guesses: {_guesses(recognition)}",
            code="unrecognized_format",
            details=details,
        )
    fmt = _READABLE.get(recognition.format)
    if fmt is None:
        if recognition.format in COMPRESSED:
            inside = f" {recognition.inner}" if recognition.inner else ""
            reason = f"{recognition.format}-compressed{inside}; unpack it first"
        else:
            reason = _REFUSALS.get(recognition.format, recognition.format)
        raise AgentError(
            f"{location!r} is {reason} (top guesses: {_guesses(recognition)})",
            code="unsupported_format",
            details=details,
        )
    dialect = recognition.dialect
    return Detection(
        format=fmt,
        encoding=recognition.encoding,
        dialect=Dialect(dialect.delimiter, dialect.quotechar, dialect.header) if dialect else None,
        evidence=recognition.evidence,
        confidence=round(recognition.confidence, 4),
        top=top,
        decided_by=decider.provenance(),
        cr_lines=fmt in ("csv", "tsv", "ndjson") and _cr_lines(head),
    )


def detect_file(location: str, decider: Decider = BASELINE) -> Detection:
    """Read the ends of `location` and recognise its format with `decider`."""
    head, tail = read_ends(location)
    return detect_sample(head, tail, location, decider)


def text_encoding(location: str) -> str | None:
    """The text encoding of `location` by its head (None when the file is empty)."""
    head, _ = read_ends(location)
    return encoding_of(head) if head else None


def delimited_dialect(location: str, fmt: str) -> Detection:
    """The dialect of a file the caller says is csv or tsv (the delimiter follows the format)."""
    head, _ = read_ends(location)
    if not head.strip():
        raise AgentError(f"{location!r} is empty", code="empty_input")
    encoding = encoding_of(head)
    guess, _ = dialect_of(decode(head, encoding))
    dialect = Dialect(guess.delimiter, guess.quotechar, guess.header)
    if fmt == "tsv":
        dialect.delimiter = "\t"
    elif dialect.delimiter == "\t":
        dialect.delimiter = ","
    return Detection(fmt, encoding, dialect, "caller", cr_lines=_cr_lines(head))


def detect(
    location: str,
    fmt: str,
    sheet: str | None = None,
    decider: Decider = BASELINE,
    encoding: str | None = None,
) -> Detection:
    """The detection for `location`, honouring a format (and encoding) the caller names."""
    if fmt == "auto":
        detection = detect_file(location, decider)
    elif fmt in ("csv", "tsv"):
        detection = delimited_dialect(location, fmt)
    else:
        text = None if fmt in BINARY_FORMATS else text_encoding(location)
        detection = Detection(fmt, text, None, "caller")
    if encoding and detection.format not in BINARY_FORMATS:
        detection = replace(detection, encoding=encoding)
    return detection
