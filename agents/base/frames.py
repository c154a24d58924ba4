"""Staged files of any supported format read as one lazy polars frame (blocking)."""

from __future__ import annotations

import os

import polars as pl

from agents.base.actions import AgentError
from agents.base.tabular.detection import detect
from agents.base.tabular.inputs import is_local, local_copy
from agents.base.tabular.readers import open_lazy


def open_files(locations: list[str], workdir: str) -> pl.LazyFrame:
    """One lazy frame over files of any supported format (columns unified)."""
    frames = []
    for index, location in enumerate(locations):
        path = location
        if not is_local(location):
            local = os.path.join(workdir, f"input-{index}")
            with local_copy(location, workdir) as copied:
                os.replace(copied, local)
            path = local
        try:
            frames.append(open_lazy(path, detect(path, "auto"), workdir))
        except pl.exceptions.PolarsError as exc:
            raise AgentError(f"cannot read {location!r}: {exc}", code="parse_error") from exc
    if not frames:
        return pl.LazyFrame()
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
