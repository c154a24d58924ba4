"""The feature vector of a file: byte statistics, magic bytes, text structure, a name hint.

Everything comes from the first HEAD_BYTES and last TAIL_BYTES, so one file costs the same
whatever its size. The extension is one-hot columns among some 270: training shows the
model files with wrong and missing names, so it learns the hint is weak. Beside the byte and
line statistics: a zip's first member and an OLE2 file's BIFF stream (workbook or document),
signatures of files that are not data, whether the head is one JSON value or several on
their own lines, and markup, template, comment and indentation patterns (XML vs HTML, YAML
vs text vs code).
"""

from __future__ import annotations

import json
import re

import numpy as np

from ml.format_recognition.sniff import DELIMITERS, decode, encoding_of, extension_of, lines_of

HEAD_BYTES = 4096
TAIL_BYTES = 1024
REGEX_CHARS = 2048  # the regular expressions are most of the cost: they read the first 2 KiB
EXTENSIONS = (
    "csv", "tsv", "tab", "txt", "psv", "dat", "json", "ndjson", "jsonl", "parquet", "avro",
    "orc", "arrow", "feather", "ipc", "xml", "xlsx", "xls", "ods", "gz", "bz2", "xz", "lzma",
    "zst", "zip", "html", "htm", "yaml", "yml", "md", "rst", "py", "js", "c", "png", "jpg",
    "pdf", "bin", "log", "h", "hpp", "cc", "cpp", "pyi", "pyx", "pxd", "css", "so", "sh", "sql",
    "pem", "svg", "toml", "ini", "cfg", "gif", "npy", "pkl", "ttf", "wav", "mat", "ts", "java",
    "go", "rs", "pyc", "whl", "jinja2", "tpl",
)  # fmt: skip
_EXT_INDEX = {e: i for i, e in enumerate(EXTENSIONS)}
_HEAD_MAGIC = (
    b"PAR1", b"Obj\x01", b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"\x1f\x8b", b"BZh",
    b"\xfd7zXZ\x00", b"\x5d\x00\x00", b"\x28\xb5\x2f\xfd", b"ORC", b"ARROW1", b"FEA1",
    b"\xff\xff\xff\xff", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"\x7fELF", b"MZ",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"PK\x05\x06", b"\xca\xfe\xba\xbe",
)  # fmt: skip
# Signatures of files that are not data (images, sounds, fonts, executables, archives of
# other kinds, NumPy and pickle dumps, compiled Python): one column says "one of these".
_OTHER_MAGIC = (
    b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"\x7fELF", b"MZ", b"\xca\xfe\xba\xbe",
    b"\xcf\xfa\xed\xfe", b"\x93NUMPY", b"RIFF", b"\x00\x01\x00\x00\x00", b"OTTO", b"wOFF",
    b"wOF2", b"\x80\x02", b"\x80\x03", b"\x80\x04\x95", b"\x80\x05\x95", b"MATLAB 5.0",
    b"!<arch>", b"SQLite format 3", b"7z\xbc\xaf", b"Rar!", b"ID3", b"OggS", b"\x00asm",
    b"\x00\x00\x01\x00", b"II*\x00", b"MM\x00*", b"fLaC", b"\x1a\x45\xdf\xa3", b"HDF",
    b"\x89HDF", b"BM",
)  # fmt: skip
# The data formats' signatures, numbered: one ordinal column a tree can split on at once.
_DATA_MAGIC = (
    b"PAR1", b"Obj\x01", b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"\x1f\x8b", b"BZh",
    b"\xfd7zXZ\x00", b"\x5d\x00\x00", b"\x28\xb5\x2f\xfd", b"ORC", b"ARROW1", b"FEA1",
    b"\xff\xff\xff\xff", b"PK\x05\x06",
)  # fmt: skip
_CONTAINS = (
    b"xl/workbook", b"[Content_Types].xml", b"opendocument.spreadsheet", b"opendocument.text",
    b"word/", b"ppt/", b"mimetype", "Workbook".encode("utf-16-le"),
    "WordDocument".encode("utf-16-le"), "Book".encode("utf-16-le"), b"avro.schema",
    b"org.apache.spark", b"parquet-cpp", b"ARROW:schema", b"xl/", b"docProps/", b"word/",
    b"ppt/", b"content.xml", b"META-INF/", b".class", b".npy", b"PowerPoint",
)  # fmt: skip
# What a zip archive's first member is called tells a workbook from a document or a plain zip.
_FIRST_MEMBER = (
    b"mimetype", b"[Content_Types].xml", b"docProps/", b"xl/", b"word/", b"ppt/", b"_rels/",
    b"META-INF/",
)  # fmt: skip
_BIFF_BOF = b"\x09\x08"  # a BIFF (xls) record stream starts with this at a sector boundary
_TAIL_MAGIC = (b"PAR1", b"ARROW1", b"PK\x05\x06", b"ORC")
# Characters whose frequency tells formats apart.
_CHARS = b",\t;|:\" '{}[]<>=#-/\\.\n\r_*@$&%!?()+0123456789"
_CHAR_CODES = np.frombuffer(_CHARS, dtype=np.uint8).astype(np.intp)
_STARTS = "<{[#-\"'%/!"
_HTML = re.compile(
    r"<(!doctype html|html|head|body|div|span|p|a|br|table|tr|td|li|ul|script|style|meta|"
    r"title|h[1-6]|img|form|input|link)[\s>/]",
    re.I,
)
_TAG = re.compile(r"</?[A-Za-z_][\w.:-]*[\s>/]")
_YAML_KEY = re.compile(r"^\s*(- )?[\w\"'.-]+:(\s|$)")
_CODE = re.compile(
    r"\b(def|import|return|class|function|var|const|let|if|else|for|while|include|public|"
    r"private|static|void|self|from|elif|lambda|async|await|struct|fn|SELECT|FROM|WHERE)\b"
)
_WORD = re.compile(r"[A-Za-z]{2,}")
_XML_ONLY = re.compile(r"xmlns[:=]|<\?xml|<!\[CDATA\[|<svg[\s>]|<\w+:\w+[\s>/]", re.I)
_PAGE = re.compile(r"<(html|head|body|script|style|div|p|br|a|li|span)[\s>/]", re.I)
_TEMPLATE = re.compile(r"\{%|\{\{|%\}|\}\}")
_COMMENT_START = ("#", "//", "/*", " *", "--", ";", "<!--")
_YAML_NESTED = re.compile(r"^(\s+)(- )?[\w\"'.-]+:(\s|$)")
_CODE_START = ("#!", '"""', "'''", "/*", "// ", "# -*-")
# A line YAML would take: "key:", "- item", a comment, or an indented continuation.
_YAML_LINE = re.compile(r"^(\s*- |\s*[\w\"'][^:#\n]{0,60}:(\s|$)|\s*#|\s+\S)")
_HEADER_KEY = re.compile(r"^[A-Z][\w-]*: \S")  # RFC 822 headers (package metadata): text
_JSON_KEY = re.compile(r'"[^"\n]{1,60}"\s*:')


def _byte_stats(data: bytes, *, full: bool = True) -> list[float]:
    size = 8 + len(_CHARS) if full else 8
    if not data:
        return [0.0] * size
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    total = float(len(data))
    nonzero = counts[counts > 0] / total
    entropy = float(-(nonzero * np.log2(nonzero)).sum()) / 8
    cumulative = np.cumsum(counts)
    control = int(cumulative[31]) - int(counts[9] + counts[10] + counts[13])
    letters = int(cumulative[90] - cumulative[64] + cumulative[122] - cumulative[96])
    out = [
        entropy,
        counts[0] / total,
        control / total,
        (total - cumulative[127]) / total,
        letters / total,
        (cumulative[57] - cumulative[47]) / total,
        (cumulative[126] - cumulative[31]) / total,
        len(nonzero) / 256,
    ]
    if full:
        out += (counts[_CHAR_CODES] / total).tolist()
    return out


def _spread(values: list[int]) -> tuple[float, float]:
    """Mean and coefficient of variation, in plain Python (numpy costs more on 30 items)."""
    n = len(values) or 1
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / n
    return mean, variance**0.5 / (mean + 1)


def _delimiter_stats(lines: list[str]) -> list[float]:
    out: list[float] = []
    for delimiter in DELIMITERS:
        counts = [line.count(delimiter) for line in lines] or [0]
        mean, spread = _spread(counts)
        mode = max(set(counts), key=counts.count)
        agree = counts.count(mode) / len(counts) if mode > 0 else 0.0
        out += [mean, spread, agree, min(mode, 64) / 64]
    return out


def _json_lines(lines: list[str]) -> float:
    """Fraction of the first whole lines that are JSON objects or arrays on their own."""
    sample = lines[:8]
    good = 0
    for line in sample:
        stripped = line.strip()
        if stripped[:1] not in ("{", "["):
            continue
        try:
            json.loads(stripped)
            good += 1
        except ValueError:
            pass
    return good / len(sample) if sample else 0.0


_DECODER = json.JSONDecoder()


def _json_shape(stripped: str, whole: bool) -> list[float]:
    """One JSON value, or several one after another on their own lines (NDJSON)?

    [the first value ends inside the head, another value starts on the next line, the head
    is exactly one value (when it is the whole file)].
    """
    if stripped[:1] not in ("{", "["):
        return [0.0, 0.0, 0.0]
    try:
        _, end = _DECODER.raw_decode(stripped)
    except ValueError:
        return [0.0, 0.0, 0.0]
    rest = stripped[end:]
    following = rest.lstrip(" \t")
    another = following[:1] in ("\n", "\r") and following.lstrip()[:1] in ("{", "[")
    return [1.0, float(another), float(whole and not rest.strip())]


def _structure(text: str, lines: list[str], head_text: str, tag_count: int) -> list[float]:
    """Markup, template, comment and indentation patterns (XML vs HTML, YAML vs text)."""
    n = max(len(lines), 1)
    tags = max(tag_count, 1)
    nested = [_YAML_NESTED.match(line) for line in lines]
    indents = {len(m.group(1)) for m in nested if m}
    lower = head_text.lower()
    return [
        min(len(_XML_ONLY.findall(head_text)), 20) / 20,
        len(_PAGE.findall(head_text)) / tags,
        min(len(_TEMPLATE.findall(head_text)), 20) / 20,
        float("<body" in lower or "<head" in lower),
        sum(1 for line in lines if line.lstrip().startswith(_COMMENT_START)) / n,
        sum(1 for m in nested if m) / n,
        min(len(indents), 6) / 6,
        sum(1 for line in lines if _HEADER_KEY.match(line)) / n,
        sum(1 for line in lines if _YAML_LINE.match(line)) / n,
        sum(1 for line in lines if line.rstrip().endswith(":")) / n,
        sum(1 for line in lines if line.lstrip().startswith(("-----BEGIN", "-----END"))) / n,
        float(text.lstrip().startswith(_CODE_START)),
    ]


def _container(head: bytes, tail: bytes) -> list[float]:
    """Binary container details: the first zip member's name, a BIFF stream in an OLE2 file."""
    first = head[30:80] if head.startswith(b"PK\x03\x04") else b""
    member = next((i + 1 for i, m in enumerate(_FIRST_MEMBER) if first.startswith(m)), 0)
    biff = 0.0
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        biff = float(any(head[at : at + 2] == _BIFF_BOF for at in range(512, len(head), 512)))
    data_magic = next((i + 1 for i, m in enumerate(_DATA_MAGIC) if head.startswith(m)), 0)
    return [
        member / len(_FIRST_MEMBER),
        biff,
        data_magic / len(_DATA_MAGIC),
        float(any(head.startswith(m) for m in _OTHER_MAGIC)),
        float(b"PK\x01\x02" in tail),
    ]


def _text_stats(head: bytes, tail: bytes, whole: bool) -> list[float]:
    encoding = encoding_of(head)
    text = decode(head, encoding)
    stripped = text.lstrip()
    first = stripped[:1]
    lines = lines_of(text, 60)
    mean_length, length_spread = _spread([len(line) for line in lines])
    head_text = text[:REGEX_CHARS]
    n = max(len(lines), 1)
    chars = max(len(text), 1)
    lower = stripped[:200].lower()
    tail_text = decode(tail, encoding).rstrip() if tail else ""
    tag_count = len(_TAG.findall(head_text))  # the costliest pattern: counted once
    return [
        *(float(first == c) for c in _STARTS),
        float(first.isalpha()),
        float(first.isdigit()),
        float(lower.startswith("<?xml")),
        float(lower.startswith("<!doctype html") or "<html" in lower),
        float(stripped.startswith("---")),
        float(encoding in ("utf-8", "utf-8-sig")),
        float(encoding.startswith("utf-16")),
        float(encoding in ("cp1252", "latin-1")),
        min(len(_HTML.findall(head_text)), 50) / 50,
        tag_count / chars * 20,
        text.count("</") / chars * 20,
        sum(1 for line in lines if _YAML_KEY.match(line)) / n,
        sum(1 for line in lines if line.lstrip().startswith("- ")) / n,
        sum(1 for line in lines if line.rstrip().endswith((".", "!", "?"))) / n,
        sum(1 for line in lines if line.rstrip().endswith((";", "{", "}", ":", ")"))) / n,
        sum(1 for line in lines if line[:1] in (" ", "\t")) / n,
        len(_CODE.findall(head_text)) / n,
        len(_WORD.findall(head_text)) / chars * 5,
        len(_JSON_KEY.findall(head_text)) / n,
        _json_lines(lines),
        min(len(lines), 60) / 60,
        float(np.log1p(mean_length)) / 8,
        length_spread,
        text.count("\r\n") / chars * 20,
        (text.count("\r") - text.count("\r\n")) / chars * 20,
        float(tail_text.endswith(("}", "]"))),
        float(tail_text.endswith(">")),
        float(tail_text.lower().endswith("</html>")),
        *_delimiter_stats(lines[:30]),
        *_json_shape(stripped, whole),
        *_structure(text, lines, head_text, tag_count),
    ]


def _texty(head: bytes) -> bool:
    """Whether the head may be text (binary heads skip the text statistics: they cost most)."""
    nuls = head.count(0)
    return nuls <= len(head) // 100 or encoding_of(head).startswith(("utf-16", "utf-32"))


_NO_TEXT = [0.0] * len(_text_stats(b"a", b"", True))


def features(head: bytes, tail: bytes, name: str | None) -> np.ndarray:
    """The feature vector of one file (float32, always the same length)."""
    head_part, tail_part = head[:HEAD_BYTES], tail[-TAIL_BYTES:]
    region = head[:HEAD_BYTES] + tail_part
    extension = np.zeros(len(EXTENSIONS) + 2, dtype=np.float64)
    ext = extension_of(name)
    extension[_EXT_INDEX.get(ext, len(EXTENSIONS) if ext else len(EXTENSIONS) + 1)] = 1.0
    values = [
        float(np.log1p(len(head))) / 12,
        float(len(tail) > 0),
        *(float(head.startswith(m)) for m in _HEAD_MAGIC),
        *(float(head[4:].startswith(m)) for m in (b"ARROW1", b"\xff\xff\xff\xff")),
        *(float(m in region) for m in _CONTAINS),
        *(float(tail.rstrip(b"\x00").endswith(m) or tail[-16:].find(m) >= 0) for m in _TAIL_MAGIC),
        *_byte_stats(head_part),
        *_byte_stats(tail_part, full=False),
        *_container(head_part, tail_part),
        *(
            _text_stats(head_part, tail_part, len(head) <= HEAD_BYTES)
            if _texty(head_part)
            else _NO_TEXT
        ),
    ]
    return np.concatenate([np.asarray(values, dtype=np.float64), extension]).astype(np.float32)
