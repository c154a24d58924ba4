"""The models the agents load: a local MLflow registry under var/, trained when it has none.

A laptop needs no MLflow server: the registry is a SQLite store beside the other embedded
state, and the first `make demo` trains and registers every model there (`python -m ml.train`
in a child process, so the launcher itself never imports scikit-learn).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from launcher.processes import ROOT


def registry_uri(var_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the SQLite store under `var_dir/mlflow`."""
    from ml.registry import local_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(var_dir / "mlflow")


def missing_champions(uri: str) -> list[str]:
    """The models with no champion in the registry at `uri`."""
    from ml import registry
    from ml.train import model_modules

    missing = []
    for name in model_modules():
        try:
            registry.champion_version(name, uri=uri)
        except registry.ModelUnavailable:
            missing.append(name)
    return missing


def ensure_models(uri: str, say: Callable[[str], object] = print) -> None:
    """Train and register the models the registry lacks (none when all have a champion)."""
    missing = missing_champions(uri)
    if not missing:
        return
    # Quick mode (smaller data sets, same code and the same promotion rule) keeps a first demo
    # to a minute or two; `make models` trains the full versions, which take the alias when
    # they beat these.
    say(
        f"training {len(missing)} models (quick) into {uri}, once; `make models` trains the "
        f"full ones: {', '.join(missing)}"
    )
    subprocess.run(
        [sys.executable, "-m", "ml.train", *missing, "--quick", "--tracking-uri", uri],
        cwd=ROOT,
        check=True,
        start_new_session=True,  # Ctrl-C is the launcher's: no traceback from the child
    )


def loaded_models(agent_urls: dict[str, str]) -> list[str]:
    """One line per model an agent serves, from its /health: name, version, source."""
    lines = []
    for agent, url in agent_urls.items():
        checks = httpx.get(f"{url}/health", timeout=5).json().get("checks", {})
        for check, detail in checks.items():
            if not check.startswith("model:"):
                continue
            version = detail.get("version") or "-"
            note = f"  ({detail['problem']})" if detail.get("problem") else ""
            lines.append(f"  {agent:<18} {check[6:]:<26} v{version:<4} {detail['source']}{note}")
    return lines
