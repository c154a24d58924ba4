"""Decision latency and held-out accuracy of every model beside its baselines (not a test).

    uv run python bench/models.py [model ...]

Each model package under ml/ offers `bench_rows()` (in `bench.py`, `train.py` or the package
itself): a list of rows, one per decider (the model, its baselines, reference tools), each with
the figures that package measures. This prints them as one table per model.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.train import model_modules  # noqa: E402


def _bench_function(package: str) -> Callable[[], list[dict[str, Any]]] | None:
    for module_name in (f"{package}.bench", f"{package}.train", package):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        found = getattr(module, "bench_rows", None)
        if callable(found):
            return found
    return None


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Rows as a Markdown table with the union of their keys as columns."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    print(f"\n## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", help="models to bench (default: all)")
    args = parser.parse_args(argv)
    failed = 0
    for name, module in model_modules().items():
        if args.models and name not in args.models:
            continue
        package = module.__name__.rsplit(".", 1)[0]
        bench = _bench_function(package)
        if bench is None:
            print(f"\n## {name}\n\nno bench_rows() in {package}")
            failed += 1
            continue
        started = time.monotonic()
        rows = bench()
        print_table(f"{name} ({time.monotonic() - started:.1f} s)", rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
