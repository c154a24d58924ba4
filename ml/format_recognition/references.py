"""The reference tools, mapped onto our classes: Magika (Google's file-type model) and libmagic.

Each sees what our recognisers see: the file itself when it is small, its head and tail
joined when it is larger (both read little more than the first and last kilobytes). A label
with no counterpart in our classes (python, png, elf, ...) maps to `other`, which is right for
files that are not data.
"""

from __future__ import annotations

from typing import Any

from ml.format_recognition.samples import HEAD_KEEP, Sample

_MAGIKA = {
    "csv": "csv", "tsv": "tsv", "json": "json", "jsonl": "ndjson", "parquet": "parquet",
    "xml": "xml", "svg": "xml", "html": "html", "yaml": "yaml", "xlsx": "xlsx", "xls": "xls",
    "ods": "ods", "gzip": "gzip", "bzip": "bz2", "xz": "xz", "zip": "zip", "txt": "text",
    "markdown": "text", "rst": "text",
}  # fmt: skip
# libmagic's descriptions first (they name formats its MIME types lump together), then MIME.
_DESCRIPTIONS = (
    ("apache parquet", "parquet"), ("apache avro", "avro"), ("apache orc", "orc"),
    ("apache arrow", "arrow"), ("csv text", "csv"), ("json text data", "json"),
    ("new line delimited json", "ndjson"), ("opendocument spreadsheet", "ods"),
    ("microsoft excel 2007", "xlsx"), ("lzma compressed", "lzma"), ("zstandard", "zstd"),
)  # fmt: skip
_MIME = {
    "text/csv": "csv", "text/tab-separated-values": "tsv", "application/json": "json",
    "application/x-ndjson": "ndjson", "text/xml": "xml", "application/xml": "xml",
    "image/svg+xml": "xml", "text/html": "html", "application/x-yaml": "yaml",
    "text/x-yaml": "yaml", "application/yaml": "yaml",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel": "xls", "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/gzip": "gzip", "application/x-gzip": "gzip", "application/x-bzip2": "bz2",
    "application/x-xz": "xz", "application/x-lzma": "lzma", "application/zstd": "zstd",
    "application/zip": "zip", "text/plain": "text",
}  # fmt: skip


def content(sample: Sample) -> bytes:
    """The bytes a reference tool is shown for `sample`."""
    return sample.head if len(sample.head) < HEAD_KEEP else sample.head + sample.tail


class MagikaReference:
    """Magika's label for a file, in our classes."""

    def __init__(self) -> None:
        from magika import Magika

        self._magika: Any = Magika()

    def label(self, sample: Sample) -> str:
        """Our class for Magika's answer."""
        result = self._magika.identify_bytes(content(sample))
        return _MAGIKA.get(str(result.output.label), "other")


class LibmagicReference:
    """libmagic's answer (description, then MIME type), in our classes."""

    def __init__(self) -> None:
        import magic

        self._describe: Any = magic.Magic()
        self._mime: Any = magic.Magic(mime=True)

    def label(self, sample: Sample) -> str:
        """Our class for libmagic's answer."""
        data = content(sample)
        description = str(self._describe.from_buffer(data)).lower()
        for needle, label in _DESCRIPTIONS:
            if needle in description:
                return label
        return _MIME.get(str(self._mime.from_buffer(data)), "other")
