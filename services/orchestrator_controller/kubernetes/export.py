"""Print Workflow resources for workflow spec files: `python -m ...kubernetes.export FILE...`.

    uv run python -m services.orchestrator_controller.kubernetes.export workflows/*.yaml \
        | kubectl -n ingestion apply -f -
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from services.orchestrator_controller.kubernetes.resources import spec_to_resource


def export(paths: Sequence[Path], *, namespace: str | None = None) -> str:
    """A multi-document YAML stream with one Workflow resource per spec file."""
    documents = []
    for path in paths:
        spec = yaml.safe_load(path.read_text())
        if not isinstance(spec, dict):
            raise SystemExit(f"{path}: not a workflow spec mapping")
        documents.append(spec_to_resource(spec, namespace=namespace))
    return yaml.safe_dump_all(documents, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="workflow spec YAML files")
    parser.add_argument("--namespace", help="namespace to put in the resources")
    args = parser.parse_args(argv)
    sys.stdout.write(export(args.files, namespace=args.namespace))


if __name__ == "__main__":
    main()
