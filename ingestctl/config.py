"""The config file: `url` and `api_key` for when neither a flag nor the environment gives them.

Looked up at `$INGESTCTL_CONFIG`, else `~/.config/ingestctl/config.yaml`. Its values become the
defaults of `INGESTCTL_URL` / `INGESTCTL_API_KEY`, so the order is flag, environment, file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

KEYS = {"url": "INGESTCTL_URL", "api_key": "INGESTCTL_API_KEY"}


def config_path() -> Path:
    explicit = os.environ.get("INGESTCTL_CONFIG")
    return Path(explicit) if explicit else Path.home() / ".config" / "ingestctl" / "config.yaml"


def apply_config_file() -> None:
    """Set the environment defaults from the config file, if there is one."""
    path = config_path()
    if not path.is_file():
        return
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"ingestctl: cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"ingestctl: {path}: expected a mapping with `url` and `api_key`")
    unknown = sorted(set(loaded) - set(KEYS))
    if unknown:
        raise SystemExit(f"ingestctl: {path}: unknown keys {', '.join(unknown)} (url, api_key)")
    for key, variable in KEYS.items():
        if loaded.get(key) is not None:
            os.environ.setdefault(variable, str(loaded[key]))
