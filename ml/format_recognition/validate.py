"""Where the recogniser goes wrong, on a validation split carved from the training data alone.

`python -m ml.format_recognition.validate [--per-class N] [--misses K]` fits on part of the
training packages and the training seed's generated files, and scores on the rest of the
training packages plus files generated from a seed of their own: the confusion between classes
and the misread files, by source. Settings are chosen here, never on the held-out split (another
seed and packages training never sees), which `make models` scores once.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from ml.format_recognition import evaluation
from ml.format_recognition.generate import generate
from ml.format_recognition.realfiles import (
    harvest,
    held_out_package,
    split_packages,
    training_files,
    unseen,
)
from ml.format_recognition.recognition import FORMATS
from ml.format_recognition.samples import Sample

VALIDATION_SHARE = 0.35
VALIDATION_SEED_OFFSET = 2  # the held-out split's generated files come from seed + 1
VALIDATION_PER_LABEL = 12  # as many real files per package and label as the held-out split has


def validation_split(
    seed: int, *, per_class: int, validation_per_class: int
) -> tuple[list[Sample], list[Sample]]:
    """(training, validation): both from the training side of the held-out split only."""
    _, _, held = split_packages(harvest(seed, per_package_label=4), seed)
    real = training_files(seed, held)
    train: list[Sample] = []
    validation: list[Sample] = []
    for package, samples in sorted(real.items()):
        if held_out_package(package, seed, VALIDATION_SHARE, salt="validation"):
            counts: Counter[str] = Counter()
            for sample in samples:
                counts[sample.label] += 1
                if counts[sample.label] <= VALIDATION_PER_LABEL:
                    validation.append(sample)
        else:
            train.extend(samples)
    validation = unseen(validation, train)
    train += generate(seed, per_class, FORMATS)
    validation += generate(seed + VALIDATION_SEED_OFFSET, validation_per_class, FORMATS)
    return train, validation


def main(argv: list[str] | None = None) -> None:
    """Fit on the validation split's training side and print where the model goes wrong."""
    from ml.format_recognition.train import fit

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--validation-per-class", type=int, default=60)
    parser.add_argument("--trees", type=int, default=60)
    parser.add_argument("--misses", type=int, default=60, help="misread files to list")
    args = parser.parse_args(argv)
    train, validation = validation_split(
        args.seed, per_class=args.per_class, validation_per_class=args.validation_per_class
    )
    model = fit(train, seed=args.seed, trees=args.trees)
    print(f"train {len(train)} files, validation {len(validation)}")
    print_report(model, validation, misses=args.misses)


def print_report(model: Any, validation: list[Sample], *, misses: int = 60) -> None:
    """Accuracy, recalls under 1, dialect, the confusion and the first `misses` misread files."""
    scored = evaluation.report(evaluation.recognizer_labeller(model), validation)
    scored |= evaluation.dialect_report(model, validation)
    for key, value in scored.items():
        if not key.startswith("recall_") or value < 1:
            print(f"{key:28} {value:.4f}")
    label = evaluation.recognizer_labeller(model)
    wrong = [(s, answer) for s in validation if (answer := label(s)) != s.label]
    for (truth, answer), n in Counter((s.label, a) for s, a in wrong).most_common():
        print(f"{truth:>10} -> {answer:10} {n}")
    for sample, answer in wrong[:misses]:
        print(f"{sample.label}->{answer} {sample.source} {sample.name!r} {sample.head[:70]!r}")


if __name__ == "__main__":
    main()
