"""Training files written by the real writers: pyarrow, polars, fastavro, openpyxl, lxml, csv.

Every sample is seeded: the same seed gives the same files. Tables have random shapes and
column kinds (ids with leading zeros, floats, words, dates, booleans, nulls); text files are
written in many dialects and encodings; some files are truncated, corrupted, compressed, or
named with a wrong extension (the name is a weak hint the model must learn to doubt).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import yaml

from ml.format_recognition.documents import EXTENSIONS_OF, VARIANTS
from ml.format_recognition.samples import Sample
from ml.format_recognition.writers import (
    WORDS,
    _cell,
    arrow_bytes,
    avro_bytes,
    cfb_bytes,
    delimited,
    json_bytes,
    ndjson_bytes,
    ods_bytes,
    orc_bytes,
    parquet_bytes,
    table,
    xlsx_bytes,
    xml_bytes,
)

_EXT = {
    "csv": ["csv"], "tsv": ["tsv", "tab"], "delimited": ["psv", "txt", "csv", "dat"],
    "json": ["json"], "ndjson": ["ndjson", "jsonl"], "parquet": ["parquet"], "avro": ["avro"],
    "orc": ["orc"], "arrow": ["arrow", "feather", "ipc"], "xml": ["xml"], "xlsx": ["xlsx"],
    "xls": ["xls"], "ods": ["ods"], "gzip": ["gz"], "bz2": ["bz2"], "xz": ["xz"],
    "lzma": ["lzma"], "zstd": ["zst"], "zip": ["zip"], "html": ["html", "htm"],
    "yaml": ["yaml", "yml"], "text": ["txt", "md", "rst", "log"],
    "other": ["py", "js", "png", "bin", "c"],
}  # fmt: skip


def prose(rng: random.Random) -> bytes:
    """Sentences, markdown or log lines: text that is not a table."""
    kind = rng.random()
    lines = []
    for _ in range(rng.randint(3, 80)):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18)))
        if kind < 0.5:
            lines.append(words.capitalize() + rng.choice([".", ".", ",", "!", "?", ""]))
        elif kind < 0.75:
            lines.append(rng.choice(["# ", "## ", "- ", "* ", "", "", "> "]) + words)
        else:
            lines.append(
                f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:00:01 "
                f"{rng.choice(['INFO', 'WARN', 'ERROR'])} {words}"
            )
    return "\n".join(lines).encode(rng.choice(["utf-8", "utf-8", "latin-1"]), errors="replace")


def html_bytes(rng: random.Random) -> bytes:
    """A web page: doctype or not, a table or paragraphs."""
    rows = table(rng)[:30]
    body = (
        "<table>"
        + "".join(
            "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>" for r in rows
        )
        + "</table>"
        if rng.random() < 0.5
        else "".join(
            f"<p>{' '.join(rng.choice(WORDS) for _ in range(12))}</p>\n"
            for _ in range(rng.randint(1, 20))
        )
    )
    head = f"<head><title>{rng.choice(WORDS)}</title><meta charset='utf-8'></head>"
    page = f"<html>{head}<body><div>{body}</div></body></html>"
    start = rng.choice(
        ["<!DOCTYPE html>\n", "<!doctype html>", "", '<?xml version="1.0"?>\n<!DOCTYPE html>']
    )
    return (start + page).encode()


def yaml_bytes(rng: random.Random) -> bytes:
    """A YAML document (configuration-like, or a list of records)."""
    rows = table(rng)[:20]
    doc: Any = (
        rows
        if rng.random() < 0.4
        else {rng.choice(WORDS): rows[0], "items": [rng.choice(WORDS)], "version": 2}
    )
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return (
        ("---\n" if rng.random() < 0.3 else "")
        + ("# config\n" if rng.random() < 0.3 else "")
        + text
    ).encode()


_CODE = [
    "import os\n\n\ndef {w}(x):\n    return x + 1\n\n\nclass {W}:\n    pass\n",
    "function {w}(a, b) {{\n  const c = a + b;\n  return c;\n}}\nmodule.exports = {w};\n",
    '#include <stdio.h>\n\nint main(void) {{\n    printf("{w}\\n");\n    return 0;\n}}\n',
    "SELECT id, {w} FROM {w}s WHERE id > 10 ORDER BY id;\n",
    '#!/bin/sh\nset -e\nfor f in *.{w}; do\n  echo "$f"\ndone\n',
]


def other_bytes(rng: random.Random) -> bytes:
    """Not a data file: source code, images, documents, executables, random bytes."""
    kind = rng.randrange(7)
    if kind == 0:
        return "".join(
            rng.choice(_CODE).format(w=rng.choice(WORDS[:20]), W=rng.choice(WORDS[:20]).title())
            for _ in range(rng.randint(1, 8))
        ).encode()
    if kind == 1:  # a PNG by hand: signature, IHDR, IDAT (zlib), IEND
        width, height = rng.randint(1, 64), rng.randint(1, 64)
        raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (
                struct.pack(">I", len(data))
                + kind
                + data
                + struct.pack(">I", zlib.crc32(kind + data))
            )

        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )
    if kind == 2:
        return rng.choice(
            [
                b"\xff\xd8\xff\xe0\x00\x10JFIF",
                b"GIF89a",
                b"%PDF-1.7\n",
                b"\x7fELF\x02\x01\x01",
                b"MZ\x90\x00",
            ]
        ) + rng.randbytes(rng.randint(100, 5000))
    if kind == 3:
        return cfb_bytes(rng, "WordDocument")
    if kind == 4:  # a Word document's zip layout
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("word/document.xml", "<w:document/>")
        return buffer.getvalue()
    return rng.randbytes(rng.randint(16, 6000))


def zip_bytes(rng: random.Random) -> bytes:
    """A zip archive of data or text files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
    ) as archive:
        for i in range(rng.randint(1, 4)):
            archive.writestr(
                f"{rng.choice(WORDS)}_{i}.{rng.choice(['csv', 'json', 'txt'])}",
                delimited(rng, ",")[0],
            )
    return buffer.getvalue()


_INNER: list[tuple[str, Callable[[random.Random], bytes]]] = [
    ("csv", lambda r: delimited(r, ",")[0]), ("json", json_bytes), ("ndjson", ndjson_bytes),
    ("xml", xml_bytes), ("text", prose),
]  # fmt: skip


def compressed(rng: random.Random, kind: str) -> tuple[bytes, str]:
    """A data or text file compressed with `kind`; the bytes and the inner format."""
    inner, make = rng.choice(_INNER)
    data = make(rng)
    if kind == "gzip":
        return gzip.compress(data, mtime=0), inner
    if kind == "bz2":
        return bz2.compress(data), inner
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ), inner
    if kind == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE), inner
    return pa.compress(data, codec="zstd", asbytes=True), inner


def one(rng: random.Random, label: str) -> Sample:
    """One generated file of class `label`, perhaps truncated, corrupted or misnamed."""
    dialect = encoding = inner = None
    extensions = _EXT[label]
    if label in ("csv", "tsv", "delimited"):
        delimiter = {"csv": ",", "tsv": "\t"}.get(label) or rng.choice([";", "|", ":", " "])
        data, dialect, encoding = delimited(rng, delimiter)
    elif label in ("gzip", "bz2", "xz", "lzma", "zstd"):
        data, inner = compressed(rng, label)
    elif label == "xls":
        data = cfb_bytes(rng, rng.choice(["Workbook", "Book"]))
    else:
        maker = _maker(rng, label)
        data = maker(rng)
        extensions = EXTENSIONS_OF.get(maker, extensions)
    if rng.random() < 0.1 and len(data) > 64:  # truncated: a download cut short
        data = data[: rng.randint(32, len(data) - 1)]
    elif rng.random() < 0.05 and len(data) > 256:  # a few bytes corrupted in the middle
        spot = rng.randint(64, len(data) - 16)
        data = data[:spot] + rng.randbytes(8) + data[spot + 8 :]
    roll = rng.random()
    if roll < 0.6:
        name: str | None = f"{rng.choice(WORDS)}.{rng.choice(extensions)}"
    elif roll < 0.8:
        name = f"{rng.choice(WORDS)}.{rng.choice(rng.choice(list(_EXT.values())))}"
    else:
        name = rng.choice([None, "download", "data.dat", "file.bin"])
    sample = Sample.of(data, name, label, f"generated:{label}", dialect=dialect, encoding=encoding)
    sample.source = f"generated:{inner}" if inner else sample.source
    return sample


_MAKERS: dict[str, Callable[[random.Random], bytes]] = {
    "json": json_bytes, "ndjson": ndjson_bytes, "parquet": parquet_bytes, "avro": avro_bytes,
    "orc": orc_bytes, "arrow": arrow_bytes, "xml": xml_bytes, "xlsx": xlsx_bytes, "ods": ods_bytes,
    "zip": zip_bytes, "html": html_bytes, "yaml": yaml_bytes, "text": prose, "other": other_bytes,
}  # fmt: skip


def _maker(rng: random.Random, label: str) -> Callable[[random.Random], bytes]:
    """The table writer of `label`, or one of the real-world shapes documents.py makes."""
    roll = rng.random()
    for maker, share in VARIANTS.get(label, []):
        if roll < share:
            return maker
        roll -= share
    return _MAKERS[label]


def generate(seed: int, per_class: int, labels: tuple[str, ...]) -> list[Sample]:
    """`per_class` files of each label, reproducibly from `seed`."""
    rng = random.Random(seed)
    return [one(rng, label) for label in labels for _ in range(per_class)]
