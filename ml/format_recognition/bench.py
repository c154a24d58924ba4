"""Rows for bench/models.py: each recogniser's held-out accuracy and inference time per file."""

from __future__ import annotations

import time
from typing import Any

from ml.format_recognition import evaluation
from ml.format_recognition.generate import generate
from ml.format_recognition.realfiles import harvest, split_packages, training_files, unseen
from ml.format_recognition.recognition import FORMATS
from ml.format_recognition.references import LibmagicReference, MagikaReference
from ml.format_recognition.rules import RulesRecognizer


def _p50(label: Any, samples: list[Any]) -> float:
    times = []
    for sample in samples[:: max(1, len(samples) // 300)]:
        started = time.perf_counter()
        label(sample)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2]


def bench_rows(
    model: Any | None = None, *, seed: int = 20261201, per_class: int = 60
) -> list[dict[str, Any]]:
    """[{recogniser, accuracy, real_files_accuracy, coarse_accuracy, p50_ms, files}] on the
    held-out split (another seed's generated files + packages training never sees); `model`
    is a trained FormatRecognizer (e.g. the registry's champion), left out when None."""
    _, real_test, held = split_packages(harvest(seed), seed)
    trained_on = [s for samples in training_files(seed, held).values() for s in samples]
    real_test = unseen(real_test, trained_on)  # as training scores it
    held_out = generate(seed + 1, per_class, FORMATS) + real_test
    recognisers: list[tuple[str, Any]] = [
        ("rules (baseline)", evaluation.recognizer_labeller(RulesRecognizer())),
        ("magika", MagikaReference().label),
        ("libmagic", LibmagicReference().label),
    ]
    if model is not None:
        recognisers.insert(0, ("model", evaluation.recognizer_labeller(model)))
    rows = []
    for name, label in recognisers:
        scored = evaluation.report(label, held_out)
        rows.append(
            {
                "recogniser": name,
                "accuracy": round(scored["accuracy"], 4),
                "real_files_accuracy": round(scored["real_files_accuracy"], 4),
                "coarse_accuracy": round(scored["coarse_accuracy"], 4),
                "p50_ms": round(_p50(label, held_out), 3),
                "files": len(held_out),
            }
        )
    return rows
