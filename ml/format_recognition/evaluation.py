"""Scoring recognisers on held-out files: accuracy, per-class recall, dialect, inference time."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ml.evaluate import p50_ms
from ml.format_recognition.recognition import DELIMITED, DialectGuess
from ml.format_recognition.samples import Sample
from ml.format_recognition.sniff import decode, encoding_of, lines_of

Labeller = Callable[[Sample], str]


def recognizer_labeller(recognizer: Any) -> Labeller:
    """A labeller over anything with `recognize(head, tail, name)`."""
    return lambda s: str(recognizer.recognize(s.head, s.tail, s.name).format)


def _family(label: str) -> str:
    return "delimited" if label in DELIMITED else label


def report(labeller: Labeller, held_out: Sequence[Sample]) -> dict[str, float]:
    """accuracy, coarse accuracy (csv/tsv/other delimiters pooled), real-file accuracy, recalls."""
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    coarse = real = real_hits = 0
    for sample in held_out:
        predicted = labeller(sample)
        right = predicted == sample.label
        totals[sample.label] += 1
        hits[sample.label] += right
        coarse += _family(predicted) == _family(sample.label)
        if sample.source.startswith("package:"):
            real += 1
            real_hits += right
    n = max(len(held_out), 1)
    out = {
        "accuracy": sum(hits.values()) / n,
        "coarse_accuracy": coarse / n,
        "real_files_accuracy": real_hits / real if real else float("nan"),
    }
    out.update({f"recall_{label}": hits[label] / totals[label] for label in sorted(totals)})
    return out


def _parsed(sample: Sample, dialect: DialectGuess) -> tuple[bool, list[list[str]]]:
    text = decode(sample.head, encoding_of(sample.head))
    rows = list(
        csv.reader(lines_of(text), delimiter=dialect.delimiter, quotechar=dialect.quotechar)
    )
    return dialect.header, rows


def same_dialect(sample: Sample, guess: DialectGuess | None) -> bool:
    """Whether `guess` reads the file as its true dialect does (an unused quote is no error)."""
    assert sample.dialect is not None
    if guess is None:
        return False
    try:
        return _parsed(sample, guess) == _parsed(sample, sample.dialect)
    except csv.Error:
        return False


def dialect_report(recognizer: Any, held_out: Sequence[Sample]) -> dict[str, float]:
    """How often delimiter, quote and header are all right on delimited files (and delimiter)."""
    full = full_hits = delimiter_total = delimiter_hits = 0
    for sample in held_out:
        if sample.dialect is None:
            continue
        dialect = recognizer.recognize(sample.head, sample.tail, sample.name).dialect
        delimiter_total += 1
        delimiter_hits += dialect is not None and dialect.delimiter == sample.dialect.delimiter
        if sample.source.startswith("generated:"):  # real files' header truth is unknown
            full += 1
            full_hits += same_dialect(sample, dialect)
    return {
        "dialect_header_accuracy": full_hits / full if full else float("nan"),
        "delimiter_accuracy": delimiter_hits / delimiter_total if delimiter_total else float("nan"),
    }


def inference_p50(recognizer: Any, held_out: Sequence[Sample], limit: int = 400) -> float:
    """Median milliseconds of one `recognize` call, over up to `limit` held-out files."""
    samples = list(held_out)[:: max(1, len(held_out) // limit)]
    return p50_ms(lambda s: recognizer.recognize(s.head, s.tail, s.name), samples)
