"""The model a service decides with: the registry's champion, or its baseline when there is none.

Agents hold one slot per model they declare (agents/base/app.py); the engine holds one for
retry decisions (services/workflow_engine/retry_model.py).

A slot loads `models:/<name>@champion` at start, off the event loop, and checks the alias every
`AGENT_MODEL_REFRESH_S`: a new champion is loaded beside the old one and swapped in with one
assignment, so a decision sees either the old model or the new one, never a half-loaded one.
With no registry configured, the registry unreachable or no champion, the slot serves the
baseline and `/health` says so (`degraded` when a registry was meant to answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decider:
    """What made a decision: recorded in step outputs so a run stays explainable."""

    predictor: Any
    model: str
    version: str | None  # None for the baseline
    source: Literal["registry", "baseline"]

    def provenance(self) -> dict[str, Any]:
        """`{"model", "version", "source"}` for a step's output."""
        return {"model": self.model, "version": self.version, "source": self.source}


class ModelSlot:
    def __init__(
        self,
        name: str,
        baseline: Any,
        *,
        tracking_uri: str | None,
        refresh_s: float = 60.0,
    ) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self.refresh_s = refresh_s
        self._baseline = Decider(baseline, name, None, "baseline")
        self._current = self._baseline
        self.problem: str | None = None if tracking_uri else "no registry configured"
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> Decider:
        """The decider to use now (one attribute read: atomic with respect to a swap)."""
        return self._current

    async def start(self) -> None:
        """Load the champion once, then keep watching the alias in the background."""
        if self.tracking_uri is None:
            return
        # MLflow's client retries a dead server for minutes by default; an agent would rather
        # serve its baseline now and look again at the next refresh.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        await self.refresh()
        self._task = asyncio.create_task(self._watch(), name=f"model-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        """Load the champion if it is not the version in use; keep serving on any failure."""
        from ml import registry

        try:
            version = await asyncio.to_thread(
                registry.champion_version, self.name, uri=self.tracking_uri
            )
            if version != self._current.version:
                loaded = await asyncio.to_thread(
                    registry.load, self.name, uri=self.tracking_uri, version=version
                )
                self._current = Decider(loaded.predictor, self.name, loaded.version, "registry")
                log.info("%s: serving champion v%s", self.name, loaded.version)
            self.problem = None
        except registry.ModelUnavailable as exc:
            # Keep a champion already loaded (the registry blinking is no reason to drop it);
            # with none loaded yet, the baseline serves.
            self.problem = str(exc)
            log.warning("%s: %s; serving %s", self.name, exc, self._current.source)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def health(self) -> tuple[str, dict[str, Any]]:
        """("ok" | "degraded", detail) for /health."""
        detail = {**self._current.provenance()}
        if self.problem:
            detail["problem"] = self.problem
        degraded = self.tracking_uri is not None and self.problem is not None
        return ("degraded" if degraded else "ok"), detail
