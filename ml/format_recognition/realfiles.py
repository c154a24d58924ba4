"""Real files that ship inside installed packages, labelled by parsing them.

A file's label is what parsing it shows, not its name: a `.csv` becomes csv, tsv or delimited
by the delimiter on which its rows agree (and is left out when no delimiter makes a table), a
`.json` must load, an `.xml` must parse, compressed files must unpack, columnar files must be
read by pyarrow. Source code, binaries and images are `other`; prose and package metadata are
`text`. Files are grouped by the package they ship in, so a split can keep whole packages out
of training.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import random
import re
import sysconfig
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.feather as feather
import pyarrow.orc as orc
import pyarrow.parquet as pq
import yaml
from lxml import etree

from ml.format_recognition.recognition import DialectGuess
from ml.format_recognition.samples import HEAD_KEEP, TAIL_KEEP, Sample

TRAIN_PER_PACKAGE_LABEL = 40  # training packages give more files than held-out ones
MAX_BYTES = 8 << 20  # larger files are skipped: parsing them to label them costs too much
_OTHER = {
    "py", "pyi", "pyx", "pxd", "c", "h", "cc", "cpp", "js", "css", "so", "png", "jpg", "ico",
    "ttf", "afm", "pyc", "npy", "npz", "mat", "wav", "f90", "f", "sql", "pkl", "sh", "pem",
}  # fmt: skip
_TEXT = {"txt", "md", "rst"}
_TEXT_NAMES = {"METADATA", "WHEEL", "LICENSE", "INSTALLER", "AUTHORS", "NOTICE", "COPYING"}
_VERSIONED = re.compile(r"-\d.*$")


def package_of(path: Path, root: Path) -> str:
    """The distribution a file belongs to (a dist-info folder counts as its package)."""
    top = path.relative_to(root).parts[0]
    if top.endswith((".dist-info", ".data")):
        top = _VERSIONED.sub("", top.rsplit(".", 1)[0])
    return top.removesuffix(".py").lower().replace("-", "_")


def _delimited(data: bytes) -> tuple[str, DialectGuess] | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = [line for line in text.splitlines() if line.strip()][:2000]
    for delimiter, label in ((",", "csv"), ("\t", "tsv"), (";", "delimited"), ("|", "delimited")):
        rows = list(csv.reader(lines, delimiter=delimiter))
        widths = Counter(len(r) for r in rows)
        width, agreeing = widths.most_common(1)[0] if widths else (0, 0)
        if width > 1 and agreeing >= 0.95 * len(rows):
            return label, DialectGuess(delimiter, '"', header=False)
    return None


def _unpacks(data: bytes, opener: object) -> bool:
    try:
        with opener(io.BytesIO(data)) as handle:  # type: ignore[operator]
            handle.read(1024)
    except (OSError, EOFError, TypeError, lzma.LZMAError):
        return False
    return True


def label_of(path: Path, data: bytes) -> tuple[str, DialectGuess | None] | None:
    """The format parsing shows `data` to be, or None when it is ambiguous or unreadable."""
    name = path.name
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    try:
        if ext == "csv" or name == "RECORD":
            return _delimited(data)
        if ext == "json":
            json.loads(data)
            return "json", None
        if ext in ("xml", "svg"):
            etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
            return "xml", None
        if ext in ("html", "htm"):
            return ("html", None) if b"<" in data[:2048] else None
        if ext in ("yaml", "yml"):
            return ("yaml", None) if isinstance(yaml.safe_load(data), dict | list) else None
        if ext == "parquet":
            pq.read_metadata(io.BytesIO(data))
            return "parquet", None
        if ext == "orc":
            orc.ORCFile(io.BytesIO(data))
            return "orc", None
        if ext == "feather":
            feather.read_table(io.BytesIO(data))
            return "arrow", None
    except Exception:  # any parser's error: the file is not what its name says
        return None
    for suffix, label, opener in (
        ("gz", "gzip", lambda f: gzip.GzipFile(fileobj=f)),
        ("bz2", "bz2", bz2.BZ2File),
        ("xz", "xz", lzma.LZMAFile),
    ):  # fmt: skip
        if ext == suffix:
            return (label, None) if _unpacks(data, opener) else None
    if ext in _OTHER:
        return "other", None
    if ext in _TEXT or name in _TEXT_NAMES:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "text", None
    return None


def harvest(
    seed: int, *, per_package_label: int = 12, root: Path | None = None, kind: str = "package"
) -> dict[str, list[Sample]]:
    """Labelled samples by package, at most `per_package_label` of each label per package.

    Each sample's source is `<kind>:<package>`; `kind` "stdlib" (with the standard library as
    `root`) keeps those files apart from the installed packages' (site-packages is skipped).
    """
    root = root or Path(sysconfig.get_paths()["purelib"])
    pools: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if "site-packages" in path.relative_to(root).parts:
            continue
        ext = path.name.rsplit(".", 1)[-1].lower() if "." in path.name else path.name
        pools[(package_of(path, root), ext)].append(path)
    rng = random.Random(seed)
    found: dict[str, list[Sample]] = defaultdict(list)
    counts: Counter[tuple[str, str]] = Counter()
    for (package, _), paths in sorted(pools.items()):
        rng.shuffle(paths)
        for path in paths[: per_package_label * 4]:
            try:
                if path.stat().st_size > MAX_BYTES or path.stat().st_size == 0:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            labelled = label_of(path, data)
            if labelled is None or counts[(package, labelled[0])] >= per_package_label:
                continue
            counts[(package, labelled[0])] += 1
            label, dialect = labelled
            tail = data[-TAIL_KEEP:]
            found[package].append(
                Sample(data[:HEAD_KEEP], tail, path.name, label, f"{kind}:{package}", dialect)
            )
    return dict(found)


def training_files(
    seed: int, held_out: list[str], *, per_package_label: int = TRAIN_PER_PACKAGE_LABEL
) -> dict[str, list[Sample]]:
    """More real files for training, by package: up to `per_package_label` of each label from
    every installed package not in `held_out`, and the standard library's files (its test
    data holds XML, JSON and text of many shapes) as packages named `stdlib:<folder>`."""
    held = set(held_out)
    found = {
        p: samples
        for p, samples in harvest(seed, per_package_label=per_package_label).items()
        if p not in held
    }
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for package, samples in harvest(
        seed, per_package_label=per_package_label, root=stdlib, kind="stdlib"
    ).items():
        found[f"stdlib:{package}"] = samples
    return found


def unseen(candidates: list[Sample], training: list[Sample]) -> list[Sample]:
    """The candidates byte-different from every training file and from each other.

    Packages ship identical files (`INSTALLER`, `WHEEL`, licence texts): held out by package
    alone, a tenth of the held-out files were copies of training files, scored as if unseen.
    """
    seen = {_digest(s) for s in training}
    kept = []
    for sample in candidates:
        digest = _digest(sample)
        if digest not in seen:
            seen.add(digest)
            kept.append(sample)
    return kept


def _digest(sample: Sample) -> bytes:
    return hashlib.sha256(sample.head + b"\x00" + sample.tail).digest()


def held_out_package(package: str, seed: int, share: float, salt: str = "held-out") -> bool:
    """Whether `package` falls in the `share` kept apart: decided by a hash of its name alone,
    so installing another package (a new dependency) moves no other package across the split."""
    digest = hashlib.sha256(f"{salt}:{seed}:{package}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_packages(
    by_package: dict[str, list[Sample]], seed: int, held_out_share: float = 0.4
) -> tuple[list[Sample], list[Sample], list[str]]:
    """(training samples, held-out samples, held-out package names), whole packages apart.

    pyarrow and numpy hold the only real Parquet, ORC, Arrow and most real CSV files: they are
    always held out, so those classes are judged on real files the model never saw (training
    has generated ones).
    """
    held = [
        package
        for package in sorted(by_package)
        if package in ("pyarrow", "numpy") or held_out_package(package, seed, held_out_share)
    ]
    train = [s for p, samples in by_package.items() if p not in held for s in samples]
    test = [s for p in held for s in by_package[p]]
    return train, test, held
