"""Text inputs: transcoding to UTF-8, line endings, and saying where a malformed file breaks.

polars and DuckDB read UTF-8 only and, when a file does not parse, say little about where.
The readers here stream the file once more on that error path to name the line and byte offset
and what was expected there, so a bad file is a 422 a user can act on.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import sys
import uuid
from collections.abc import Iterator
from typing import TextIO

from agents.base.actions import AgentError
from agents.base.tabular.detection import Detection

UTF8 = ("utf-8", "utf-8-sig", "utf8", "ascii")
CHUNK = 1 << 20
# The error path reads at most this much of a file to find the line that breaks it.
EXPLAIN_BYTES = 256 << 20
_OFFSET = re.compile(r"offset in the file is (\d+) bytes")


def is_utf8(encoding: str | None) -> bool:
    """Whether text in `encoding` can be read by polars and DuckDB as it is."""
    return not encoding or encoding.lower() in UTF8


def eol_of(detection: Detection) -> str:
    """The line terminator polars should split delimited text on (`\\r` for old Mac files)."""
    return "\r" if detection.cr_lines else "\n"


def _bad_bytes(name: str, encoding: str, offset: int, line: int, exc: UnicodeError) -> AgentError:
    return AgentError(
        f"{name!r} is not valid {encoding} at byte offset {offset} (line "
        f"{line}): {getattr(exc, 'reason', exc)}; name the file's encoding with `encoding`",
        code="bad_encoding",
        details={"encoding": encoding, "byte_offset": offset, "line": line},
    )


def _decoded(
    path: str, encoding: str, name: str, newline: bytes, limit: int | None = None
) -> Iterator[str]:
    """The text of `path` in chunks; a byte not valid in `encoding` is the 422 naming its
    offset and line. Stops after `limit` bytes when one is given."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError as exc:
        raise AgentError(f"unknown text encoding {encoding!r}", code="bad_encoding") from exc
    consumed, lines = 0, 1
    with open(path, "rb") as source:
        while limit is None or consumed < limit:
            chunk = source.read(CHUNK)
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                offset = consumed - pending + exc.start
                line = lines + chunk[: max(exc.start - pending, 0)].count(newline)
                raise _bad_bytes(name, encoding, offset, line, exc) from exc
            yield text
            if not chunk:
                return
            consumed += len(chunk)
            lines += chunk.count(newline)


def to_utf8(
    path: str, encoding: str | None, workdir: str, *, cr_lines: bool = False, name: str = ""
) -> str:
    """`path` itself if it is UTF-8, else a streamed UTF-8 copy (polars and DuckDB read UTF-8).

    `cr_lines` translates `\\r` line ends to `\\n` (for NDJSON, whose strings cannot hold a raw
    `\\r`; delimited text keeps its ends and is read with `eol_of`). A byte that is not valid
    in `encoding` is a 422 naming its offset and line.
    """
    if is_utf8(encoding) and not cr_lines:
        return path
    newline = b"\r" if cr_lines else b"\n"
    target = os.path.join(workdir, f"utf8-{uuid.uuid4().hex}-{os.path.basename(path)}")
    with open(target, "w", encoding="utf-8", newline="") as sink:
        for text in _decoded(path, encoding or "utf-8", name or os.path.basename(path), newline):
            sink.write(text.replace("\r", "\n") if cr_lines else text)
    return target


def invalid_utf8(path: str, name: str, newline: bytes = b"\n") -> AgentError | None:
    """The error for the first byte of `path` that is not UTF-8 (None if the first
    EXPLAIN_BYTES hold none)."""
    try:
        for _ in _decoded(path, "utf-8", name, newline, EXPLAIN_BYTES):
            pass  # decoding the head is the check: a bad byte raises with its offset and line
    except AgentError as error:
        return error
    return None


def _field_limit() -> None:
    # The csv module refuses fields over 128 KiB, which polars reads: lift it for the check.
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _bounded_lines(handle: TextIO) -> Iterator[str]:
    read = 0
    for line in handle:
        read += len(line)
        if read > EXPLAIN_BYTES:
            return
        yield line


def malformed_row(path: str, detection: Detection, name: str) -> AgentError | None:
    """The error for the first record of the delimited text at `path` that polars refuses:
    more fields than the first row, or a stray quote (None if none is found).

    A record with fewer fields is not one: polars (like pandas and DuckDB's `null_padding`)
    reads its missing trailing fields as nulls.
    """
    dialect = detection.dialect
    assert dialect is not None
    _field_limit()
    encoding = detection.encoding or "utf-8"
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        reader = csv.reader(
            _bounded_lines(handle),
            delimiter=dialect.delimiter,
            quotechar=dialect.quotechar or None,
            quoting=csv.QUOTE_MINIMAL if dialect.quotechar else csv.QUOTE_NONE,
            strict=True,
        )
        width: int | None = None
        start = 1
        try:
            for row in reader:
                if not row:  # a blank line: polars skips it too
                    start = reader.line_num + 1
                    continue
                if width is None:
                    width = len(row)
                elif len(row) > width:
                    what = "the header" if dialect.header else "the first row"
                    return AgentError(
                        f"{name!r} line {start}: {len(row)} fields where {what} has {width} "
                        f"(delimiter {dialect.delimiter!r}); quote values holding the delimiter",
                        code="parse_error",
                        details={"line": start, "expected_fields": width, "found": len(row)},
                    )
                start = reader.line_num + 1
        except csv.Error as exc:
            hint = (
                " (the file ends inside a quoted value: truncated?)"
                if "end of data" in str(exc)
                else ""
            )
            return AgentError(
                f"{name!r} line {reader.line_num}: {exc}{hint} (quote character "
                f"{dialect.quotechar!r}, delimiter {dialect.delimiter!r})",
                code="parse_error",
                details={"line": reader.line_num},
            )
    return None


def byte_offset(message: str) -> int | None:
    """The byte offset a polars error message names, if any."""
    match = _OFFSET.search(message)
    return int(match.group(1)) if match else None
