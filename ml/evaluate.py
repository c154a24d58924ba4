"""What training hands to the registry: a model with its held-out report beside its baseline.

Every model is judged the same way: one primary metric, the model's score and the baseline's
on the same held-out data, plus whatever per-class or per-scenario figures explain them. The
`score` callable scores any predictor of the same interface on that held-out data, so a new
version is compared with the current champion like for like.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"


@dataclass
class TrainedModel:
    name: str  # the registered model's name, e.g. "format_recognition"
    predictor: Any  # the picklable object the agent calls
    metric: str  # the primary metric, e.g. "accuracy"
    model_score: float
    baseline_score: float
    score: Callable[[Any], float]  # scores any predictor of this interface on the held-out data
    higher_is_better: bool = True
    details: dict[str, float] = field(default_factory=dict)  # per class, per scenario, ...
    params: dict[str, Any] = field(default_factory=dict)  # training data, sizes, seed, ...
    description: str = ""
    training_data: str = ""  # one line for the README table
    baseline: str = ""  # what the baseline is, for the README table
    references: dict[str, float] = field(default_factory=dict)  # e.g. {"magika": 0.884}
    inference_ms_p50: float | None = None
    artifact_bytes: int | None = None
    notes: str = ""  # anything a reader of the table must know (e.g. a target not met)

    def beats(self, other: float) -> bool:
        """Whether this model's score is strictly better than `other`."""
        return self.model_score > other if self.higher_is_better else self.model_score < other

    def all_metrics(self) -> dict[str, float]:
        """Everything logged to MLflow: the primary metric, the baseline's, the details."""
        metrics = {
            self.metric: self.model_score,
            f"baseline_{self.metric}": self.baseline_score,
            **{f"ref_{k}_{self.metric}": v for k, v in self.references.items()},
            **self.details,
        }
        if self.inference_ms_p50 is not None:
            metrics["inference_ms_p50"] = self.inference_ms_p50
        return metrics


def p50_ms(call: Callable[[Any], Any], samples: Iterable[Any], *, repeat: int = 1) -> float:
    """Median wall time of `call(sample)` in milliseconds, one sample at a time."""
    times: list[float] = []
    for sample in samples:
        for _ in range(repeat):
            started = time.perf_counter()
            call(sample)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times) if times else float("nan")


def _cell(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_readme(rows: list[dict[str, Any]], *, command: str, path: Path = README) -> None:
    """The table of every model's held-out figures, as `make models` last measured them."""
    lines = [
        "# Models",
        "",
        f"Written by `{command}`; every figure is on held-out data the model never trained on,",
        "model and baseline on the same split. The `champion` alias moves to a new version only",
        "when it beats both its baseline and the current champion there.",
        "",
        "| model | training data | metric | model | baseline | references | artifact | "
        "inference p50 | registered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trained: TrainedModel = row["trained"]
        refs = ", ".join(f"{k} {v:.4f}" for k, v in trained.references.items()) or "–"
        size = f"{trained.artifact_bytes / 1024:.0f} KiB" if trained.artifact_bytes else "–"
        inference = (
            f"{trained.inference_ms_p50:.3f} ms" if trained.inference_ms_p50 is not None else "–"
        )
        lines.append(
            f"| {trained.name} | {trained.training_data} | {trained.metric}"
            f"{'' if trained.higher_is_better else ' (lower is better)'} | "
            f"{_cell(trained.model_score)} | {_cell(trained.baseline_score)} ({trained.baseline}) "
            f"| {refs} | {size} | {inference} | {row['registered']} |"
        )
    for row in rows:
        trained = row["trained"]
        lines += ["", f"## {trained.name}", ""]
        if trained.description:
            lines += [trained.description, ""]
        if trained.notes:
            lines += [trained.notes, ""]
        if trained.details:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" for k, v in sorted(trained.details.items())]
    path.write_text("\n".join(lines) + "\n")
