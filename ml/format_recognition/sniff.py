"""Rules both recognisers share: text encoding, decoding a head, the dialect of delimited text.

The dialect head parses the first lines with every candidate delimiter and quote character and
keeps the one whose rows agree on a field count; unlike `csv.Sniffer` it never raises, and it
reads `\\r`-only line endings (old Mac files) like any other.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import lzma
import re
import zlib
from collections import Counter

from ml.format_recognition.recognition import DialectGuess

DIALECT_CHARS = 8192
DIALECT_LINES = 40
DELIMITERS = (",", "\t", ";", "|", ":", " ")
QUOTES = ('"', "'")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NUMBER = re.compile(r"^[-+]?(\d+([.,]\d*)?|\.\d+)([eE][-+]?\d+)?%?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?.*)?$|^\d{1,2}/\d{1,2}/\d{2,4}$")


def encoding_of(sample: bytes) -> str:
    """utf-8(-sig), utf-16 (with a BOM, or BOM-less by its zero bytes), cp1252 or latin-1."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if len(sample) >= 8:
        even, odd = sample[0:512:2].count(0), sample[1:512:2].count(0)
        half = min(len(sample), 512) // 2
        if odd > 0.4 * half and even < 0.05 * half:
            return "utf-16-le"
        if even > 0.4 * half and odd < 0.05 * half:
            return "utf-16-be"
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


def decode(sample: bytes, encoding: str) -> str:
    """The text of a head cut anywhere (a partial last character is dropped), BOM removed."""
    if encoding in ("utf-16", "utf-32") and not sample.startswith(
        (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    ):
        encoding += "-le"  # a tail, or a head without its BOM: the common byte order
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        return decoder.decode(sample, final=False).lstrip("\ufeff")
    except UnicodeError:
        return sample.decode("latin-1")


def lines_of(text: str, limit: int = DIALECT_LINES) -> list[str]:
    """Whole lines of a head (the cut-off last one dropped); any of \\r\\n, \\n, \\r ends one."""
    parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(parts) > 1:
        parts = parts[:-1]  # the head may end mid-line
    return [p for p in parts[: limit + 1] if p.strip()][:limit]


def _rows(lines: list[str], delimiter: str, quote: str) -> list[list[str]]:
    try:
        return list(csv.reader(lines, delimiter=delimiter, quotechar=quote, strict=False))
    except csv.Error:
        return []


def _score(rows: list[list[str]]) -> float:
    """How well rows agree on a field count above one (higher is better; 0 means no table)."""
    if not rows:
        return 0.0
    counts = Counter(len(r) for r in rows)
    width, agreeing = counts.most_common(1)[0]
    if width < 2:
        return 0.0
    # Agreement first; more columns as a tie-break (a wrong delimiter rarely splits evenly).
    return agreeing / len(rows) + 0.01 * min(width, 50) / 50


def _looks_typed(cell: str) -> str:
    cell = cell.strip()
    if not cell:
        return "empty"
    if _NUMBER.match(cell):
        return "number"
    if _DATE.match(cell):
        return "date"
    if cell.lower() in ("true", "false"):
        return "bool"
    return "text"


def has_header(rows: list[list[str]]) -> bool:
    """Whether the first row names the columns: typed columns below a text cell, or all-text."""
    if len(rows) < 2:
        return bool(rows) and all(_looks_typed(c) == "text" for c in rows[0])
    first, rest = rows[0], rows[1 : DIALECT_LINES + 1]
    if any(_looks_typed(c) in ("number", "date", "bool") for c in first):
        return False
    if any(not c.strip() for c in first):
        return False  # a header names every column; data often has empty cells
    votes = 0
    for index, cell in enumerate(first):
        below = [_looks_typed(r[index]) for r in rest if index < len(r)]
        below = [k for k in below if k != "empty"]
        if below and all(k != "text" for k in below):
            votes += 1  # a text cell above a typed column
        elif below and len(set(below)) == 1:
            lengths = [len(r[index]) for r in rest if index < len(r)]
            # Text above text: a header cell is rarely repeated below and differs in length,
            # and names its column in a few words rather than a phrase.
            if cell in {r[index] for r in rest if index < len(r)} or len(cell.split()) > 3:
                votes -= 1
            elif lengths and abs(len(cell) - sum(lengths) / len(lengths)) > 2:
                votes += 1
    # All-text tables usually have a header too (as the converter always assumed).
    return votes >= 0


def _quote_of(lines: list[str], delimiter: str) -> str:
    """The quote character that opens and closes cells most often ('"' when neither does)."""
    best, hits = '"', 0
    for quote in QUOTES:
        found = sum(
            line.startswith(quote)
            + line.endswith(quote)
            + line.count(delimiter + quote)
            + line.count(quote + delimiter)
            for line in lines
        )
        if found > hits:
            best, hits = quote, found
    return best


def dialect_of(text: str) -> tuple[DialectGuess, float]:
    """The best delimiter, quote character and header of delimited text, and its agreement."""
    lines = lines_of(text[:DIALECT_CHARS])
    best: tuple[float, str, str] = (0.0, ",", '"')
    for delimiter in DELIMITERS:
        if not any(delimiter in line for line in lines):
            continue
        quote = _quote_of(lines, delimiter)
        score = _score(_rows(lines, delimiter, quote))
        if delimiter == " ":
            score -= 0.05  # spaces also separate words: prefer a real delimiter on a tie
        if score > best[0]:
            best = (score, delimiter, quote)
    score, delimiter, quote = best
    if score == 0.0:  # one column: only the quote character matters
        quote = _quote_of(lines, "\n")
    rows = _rows(lines, delimiter, quote)
    return DialectGuess(delimiter, quote, has_header(rows)), max(score, 0.0)


def extension_of(name: str | None) -> str:
    """The lower-case extension of a file name or URI ('' when none)."""
    if not name:
        return ""
    base = name.rsplit("/", 1)[-1].split("?", 1)[0]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def unpack_head(head: bytes, kind: str, limit: int = 16384) -> bytes | None:
    """The first bytes inside a compressed head (None when they cannot be unpacked)."""
    try:
        if kind == "gzip":
            return zlib.decompressobj(wbits=31).decompress(head, limit)
        if kind == "bz2":
            return bz2.BZ2Decompressor().decompress(head, limit)
        if kind in ("xz", "lzma"):
            return lzma.LZMADecompressor().decompress(head, limit)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
        return None
    return None  # zstd: no decoder for a partial frame in this environment
