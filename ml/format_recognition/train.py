"""Train the format recogniser: generated files plus real ones from installed packages.

Training: files written by real writers (ml.format_recognition.generate, seeded; tables by
ml.format_recognition.writers, the shapes real files take by ml.format_recognition.documents)
and real files: up to 40 of each label from every installed package outside the held-out
share, and the standard library's. Held out: files generated from another seed, and up to
12 of each label from the packages never seen in training (ml.format_recognition.realfiles),
minus any byte-identical to a training file or to another held-out file (packages ship
copies of the same `INSTALLER`, `WHEEL` and licence files). Packages fall on either side by
a hash of their name, so a new dependency moves no other package across the split.
Settings (class weights, features per split, size) were chosen on validation splits carved
from the training packages (ml.format_recognition.validate), never on the held-out files.
The baseline is the converter's former rules (ml.format_recognition.rules); Magika and
libmagic are scored on the same files as references.
"""

from __future__ import annotations

import io
import random
import time
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from ml.evaluate import TrainedModel
from ml.format_recognition import evaluation
from ml.format_recognition.features import features
from ml.format_recognition.forest import ArrayForest
from ml.format_recognition.generate import generate
from ml.format_recognition.model import FormatRecognizer
from ml.format_recognition.realfiles import harvest, split_packages, training_files, unseen
from ml.format_recognition.recognition import FORMATS
from ml.format_recognition.references import LibmagicReference, MagikaReference
from ml.format_recognition.rules import RulesRecognizer
from ml.format_recognition.samples import Sample

NAME = "format_recognition"


def _data(ctx: Any) -> tuple[list[Sample], list[Sample], dict[str, Any]]:
    per_class, held_per_class = (30, 15) if ctx.quick else (400, 60)
    by_package = harvest(ctx.seed, per_package_label=4 if ctx.quick else 12)
    real_train, real_test, held_packages = split_packages(by_package, ctx.seed)
    if not ctx.quick:  # more files of the training packages, and the standard library's
        more = training_files(ctx.seed, held_packages)
        real_train = [s for samples in more.values() for s in samples]
    real_test = unseen(real_test, real_train)
    if ctx.quick:  # a sample of the real files keeps the quick mode quick
        rng = random.Random(ctx.seed)
        real_train = rng.sample(real_train, min(len(real_train), 300))
        real_test = rng.sample(real_test, min(len(real_test), 250))
    train = generate(ctx.seed, per_class, FORMATS) + real_train
    test = generate(ctx.seed + 1, held_per_class, FORMATS) + real_test
    params = {
        "generated_per_class": per_class,
        "generated_held_out_per_class": held_per_class,
        "real_train_files": len(real_train),
        "real_held_out_files": len(real_test),
        "real_held_out_packages": len(held_packages),
        "train_files": len(train),
        "held_out_files": len(test),
    }
    return train, test, params


def fit(train: list[Sample], *, seed: int, trees: int, **forest: Any) -> FormatRecognizer:
    """A recogniser fitted on `train` (`forest` overrides the forest's settings)."""
    x = np.stack([features(s.head, s.tail, s.name) for s in train])
    y = np.array([s.label for s in train])
    settings: dict[str, Any] = {
        "max_depth": 20,
        "min_samples_leaf": 1,
        "max_features": 0.2,
        # "balanced" weighed the few generated Word files inside `other` (thousands of real
        # files) below the xls ones beside them; the square root keeps rare classes heard
        # without drowning a big class's minorities (chosen on a validation split).
        "class_weight": "sqrt",
    } | forest
    if settings["class_weight"] == "sqrt":  # halfway between none and balanced
        labels, counts = np.unique(y, return_counts=True)
        settings["class_weight"] = {
            str(c): float((counts.max() / n) ** 0.5) for c, n in zip(labels, counts, strict=True)
        }
    fitted = RandomForestClassifier(
        n_estimators=trees, n_jobs=1, random_state=seed, **settings
    ).fit(x, y)
    return FormatRecognizer(ArrayForest(fitted), version=f"forest-{trees}")


def train(ctx: Any) -> TrainedModel:
    """Generate, fit, evaluate against the rules, Magika and libmagic; the trained model."""
    started = time.monotonic()
    train_set, held_out, params = _data(ctx)
    model = fit(train_set, seed=ctx.seed, trees=30 if ctx.quick else 60)
    rules = RulesRecognizer()
    mine = evaluation.report(evaluation.recognizer_labeller(model), held_out)
    base = evaluation.report(evaluation.recognizer_labeller(rules), held_out)
    details = {f"model_{k}": v for k, v in mine.items()}
    details |= {f"baseline_{k}": v for k, v in base.items()}
    details |= {f"model_{k}": v for k, v in evaluation.dialect_report(model, held_out).items()}
    details |= {f"baseline_{k}": v for k, v in evaluation.dialect_report(rules, held_out).items()}
    references: dict[str, float] = {}
    # Magika takes ~10 ms a file: quick mode scores the references on a sample only.
    ref_set = held_out[:: max(1, len(held_out) // 120)] if ctx.quick else held_out
    for name, tool in (("magika", MagikaReference), ("libmagic", LibmagicReference)):
        scored = evaluation.report(tool().label, ref_set)
        references[name] = scored["accuracy"]
        details |= {f"{name}_{k}": v for k, v in scored.items()}
    p50 = evaluation.inference_p50(model, held_out)
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    params |= {"seed": ctx.seed, "trees": model.version, "threshold": model.threshold}
    params["train_seconds"] = round(time.monotonic() - started, 1)

    def score(predictor: Any) -> float:
        return evaluation.report(evaluation.recognizer_labeller(predictor), held_out)["accuracy"]

    notes = _notes(mine, base, references, details, p50)
    return TrainedModel(
        name=NAME,
        predictor=model,
        metric="accuracy",
        model_score=mine["accuracy"],
        baseline_score=base["accuracy"],
        score=score,
        details=details,
        params=params,
        description="The data-converter's format recogniser: a random forest over the first "
        "4 KiB and last 1 KiB of a file (byte statistics, magic bytes, text structure, the "
        "name's extension as a weak hint) naming one of "
        f"{len(FORMATS)} formats, with a rule-assisted dialect head for delimited text.",
        training_data=f"{params['train_files']} files: generated by real writers + real files "
        "of installed packages (held out: another seed + unseen packages)",
        baseline="the converter's former rules",
        references=references,
        inference_ms_p50=p50,
        artifact_bytes=len(buffer.getvalue()),
        notes=notes,
    )


def _notes(
    mine: dict[str, float],
    base: dict[str, float],
    references: dict[str, float],
    details: dict[str, float],
    p50: float,
) -> str:
    misses = [
        f"{k.removeprefix('model_recall_')} {v:.2f}"
        for k, v in details.items()
        if k.startswith("model_recall_") and v < 0.99
    ]
    dialect = details["model_dialect_header_accuracy"]
    table, short = comparison(details)
    lines = [
        f"Held-out accuracy {mine['accuracy']:.4f} (real files of unseen packages "
        f"{mine['real_files_accuracy']:.4f}); rules {base['accuracy']:.4f}; "
        + ", ".join(f"{k} {v:.4f}" for k, v in references.items())
        + f". Inference p50 {p50:.3f} ms.",
        "Classes under 0.99 recall: " + (", ".join(misses) or "none") + ".",
        f"Dialect (delimiter and quote) and header right on {dialect:.4f} of the generated "
        f"delimited files (the rules {details['baseline_dialect_header_accuracy']:.4f}); the "
        f"delimiter right on {details['model_delimiter_accuracy']:.4f} of all delimited files, "
        "real ones included (a real file's header is not known, so it is not scored).",
        "The issue's targets: 0.99 held-out accuracy "
        + ("met" if mine["accuracy"] >= 0.99 else "not met")
        + "; dialect and header on 0.98 of delimited files "
        + ("met" if dialect >= 0.98 else "not met")
        + "; at least Magika's and the rules' recall on every class both name "
        + ("met" if not short else "not met (" + ", ".join(short) + ")")
        + f"; p50 under 1 ms {'met' if p50 < 1 else 'not met'}.",
        "Zip, xlsx and Avro writers stamp times and random sync markers into the generated "
        "files, so figures move by about 0.001 from one run to the next.",
        "xls files are hand-made OLE2 containers (no xls writer is installed); zstd's inner "
        "format is not named (no zstd decoder for a partial frame).",
    ]
    return " ".join(lines) + "\n\n" + table


_TOOLS = ("model", "baseline", "magika", "libmagic")


def comparison(details: dict[str, float]) -> tuple[str, list[str]]:
    """Per-class recall of the model, the rules, Magika and libmagic as a Markdown table, and
    the classes where the model falls short of Magika or the rules. A tool names a class when it
    recalls any file of it; the target counts the classes both Magika and the rules name."""
    lines = [
        "| class | model | rules | magika | libmagic | both name it | model >= both |",
        "|---|---|---|---|---|---|---|",
    ]
    short = []
    for label in FORMATS:
        recall = {t: details.get(f"{t}_recall_{label}", float("nan")) for t in _TOOLS}
        both = recall["baseline"] > 0 and recall["magika"] > 0
        best = max(recall["baseline"], recall["magika"])
        ok = recall["model"] >= best
        if both and not ok:
            short.append(f"{label} {recall['model']:.4f} < {best:.4f}")
        cells = " | ".join(f"{recall[t]:.4f}" for t in _TOOLS)
        verdict = ("yes" if ok else "**no**") if both else "–"
        lines.append(f"| {label} | {cells} | {'yes' if both else 'no'} | {verdict} |")
    return "\n".join(lines), short
