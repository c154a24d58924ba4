"""What a recogniser answers: a format among FORMATS, how sure it is, and the text details."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The classes both recognisers name. "delimited" is delimited text with a delimiter other than
# comma or tab (semicolon, pipe, colon, space); "other" is a file that is not data at all
# (source code, images, executables, documents, random bytes).
DELIMITED = ("csv", "tsv", "delimited")
COMPRESSED = ("gzip", "bz2", "xz", "lzma", "zstd")
FORMATS = (
    *DELIMITED,
    "json",
    "ndjson",
    "parquet",
    "avro",
    "orc",
    "arrow",
    "xml",
    "xlsx",
    "xls",
    "ods",
    *COMPRESSED,
    "zip",
    "html",
    "yaml",
    "text",
    "other",
)
TEXT_FORMATS = (*DELIMITED, "json", "ndjson", "xml", "html", "yaml", "text")
UNKNOWN = "unknown"  # what a recogniser answers when it is unsure


@dataclass
class DialectGuess:
    delimiter: str
    quotechar: str
    header: bool


@dataclass
class Recognition:
    format: str  # one of FORMATS, or UNKNOWN when confidence is below the recogniser's threshold
    confidence: float
    top: list[tuple[str, float]] = field(default_factory=list)  # best guesses, best first
    encoding: str | None = None  # text formats only
    dialect: DialectGuess | None = None  # delimited text only
    inner: str | None = None  # what a compressed file holds, when its head could be unpacked
    evidence: str = ""  # "model", "magic bytes", "content", ...

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (top guesses as {format, confidence} objects)."""
        out = asdict(self)
        out["top"] = [{"format": f, "confidence": round(p, 4)} for f, p in self.top]
        out["confidence"] = round(self.confidence, 4)
        return out
