"""`python -m ml.train` (`make models`): train, evaluate, register every model; write the table.

Each model lives in a sub-package `ml/<model>/` whose `train.py` defines `NAME` (the registered
model's name) and `train(ctx: TrainingContext) -> TrainedModel`. They are found, not listed, so
adding a model touches nothing here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ml import registry
from ml.evaluate import write_readme

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TrainingContext:
    seed: int = 20261201
    # The platform database whose run history the telemetry models learn from; None (or a
    # database with no history yet) means simulator traces alone, which training says so.
    database_url: str | None = None
    db_schema: str | None = None
    quick: bool = False  # smaller data sets, for tests: same code path, fewer samples


def model_modules() -> dict[str, ModuleType]:
    """Every `ml/<model>/train.py`, by the name it registers under."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules([str(PACKAGE)]), key=lambda i: i.name):
        if not info.ispkg or not (PACKAGE / info.name / "train.py").exists():
            continue
        module = importlib.import_module(f"ml.{info.name}.train")
        found[module.NAME] = module
    return found


def train_and_register(
    names: list[str] | None, ctx: TrainingContext, *, uri: str | None = None
) -> list[dict[str, Any]]:
    """Train the named models (all when None), register each; the rows of the report."""
    modules = model_modules()
    unknown = set(names or []) - set(modules)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {sorted(modules)}")
    rows = []
    for name, module in modules.items():
        if names and name not in names:
            continue
        started = time.monotonic()
        trained = module.train(ctx)
        registered = registry.register(trained, uri=uri)
        took = time.monotonic() - started
        print(
            f"{name}: {trained.metric} {trained.model_score:.4f} vs baseline "
            f"{trained.baseline_score:.4f} -> v{registered.version}, {registered.reason} "
            f"({took:.1f} s)",
            flush=True,
        )
        status = "champion" if registered.promoted else "kept baseline/champion"
        result = {
            "model": name,
            "version": registered.version,
            "promoted": registered.promoted,
            "reason": registered.reason,
            "metric": trained.metric,
            "model_score": trained.model_score,
            "baseline_score": trained.baseline_score,
            "champion_score": registered.champion_score,
            "params": {k: str(v) for k, v in trained.params.items()},
            "seconds": round(took, 2),
        }
        rows.append(
            {
                "trained": trained,
                "registered": f"v{registered.version} ({status})",
                "result": result,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", help="models to train (default: all)")
    parser.add_argument("--seed", type=int, default=TrainingContext.seed)
    parser.add_argument("--quick", action="store_true", help="small data sets (tests)")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or var/mlflow")
    parser.add_argument("--database-url", help="platform database with run history")
    parser.add_argument("--db-schema", help="platform schema (default: ingestion_platform)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite ml/README.md")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="train only the models with no champion yet (a fresh install's registry)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON result per model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ctx = TrainingContext(
        seed=args.seed, database_url=args.database_url, db_schema=args.db_schema, quick=args.quick
    )
    names = args.models or None
    if args.if_missing:
        names = [n for n in (names or model_modules()) if not _has_champion(n, args.tracking_uri)]
        if not names:
            print("every model has a champion; nothing to train")
            return
    rows = train_and_register(names, ctx, uri=args.tracking_uri)
    if args.json:
        for row in rows:
            print(json.dumps(row["result"]), flush=True)
    if not args.no_readme and not args.models and not args.quick and not args.if_missing:
        write_readme(rows, command="make models")
        print(f"wrote {Path('ml/README.md')}")


def _has_champion(name: str, uri: str | None) -> bool:
    try:
        registry.champion_version(name, uri=uri)
    except registry.ModelUnavailable:
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
