"""The model a service decides with: the registry's champion, or its baseline when there is none.

Agents hold one slot per model they declare (agents/base/app.py); the engine holds one for
retry decisions (services/workflow_engine/retry_model.py).

A slot loads `models:/<name>@champion` at start, off the event loop, and checks the alias every
`AGENT_MODEL_REFRESH_S`: a new champion is loaded beside the old one and swapped in with one
assignment, so a decision sees either the old model or the new one, never a half-loaded one.
A binding (ml/bindings.py: a Model resource's or an admin's) may name another registered model
or alias; it is read at each refresh, so a change reaches every service without a restart.
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

from ml.bindings import Binding, BindingReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decider:
    """What made a decision: recorded in step outputs so a run stays explainable."""

    predictor: Any
    model: str
    version: str | None  # None for the baseline
    source: Literal["registry", "baseline"]
    # Where in the registry, when a binding moved the model away from <model>@champion.
    registered_model: str | None = None
    alias: str | None = None

    def provenance(self) -> dict[str, Any]:
        """`{"model", "version", "source"}` for a step's output (with `registered_model` and
        `alias` when a binding chose them)."""
        found: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "source": self.source,
        }
        if self.registered_model is not None:
            found |= {"registered_model": self.registered_model, "alias": self.alias}
        return found


class ModelSlot:
    def __init__(
        self,
        name: str,
        baseline: Any,
        *,
        tracking_uri: str | None,
        refresh_s: float = 60.0,
        binding: BindingReader | None = None,
    ) -> None:
        self.name = name
        self._read_binding = binding
        self.binding = Binding.default(name)
        self._loaded_from: Binding | None = None
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

        binding = await self._binding()
        try:
            version = await asyncio.to_thread(
                registry.alias_version,
                binding.registered_model,
                binding.alias,
                uri=self.tracking_uri,
            )
            if version != self._current.version or binding != self._loaded_from:
                loaded = await asyncio.to_thread(
                    registry.load, binding.registered_model, uri=self.tracking_uri, version=version
                )
                bound = not binding.is_default_for(self.name)
                self._current = Decider(
                    loaded.predictor,
                    self.name,
                    loaded.version,
                    "registry",
                    registered_model=binding.registered_model if bound else None,
                    alias=binding.alias if bound else None,
                )
                self._loaded_from = binding
                log.info(
                    "%s: serving %s@%s v%s",
                    self.name,
                    binding.registered_model,
                    binding.alias,
                    loaded.version,
                )
            self.problem = None
        except registry.ModelUnavailable as exc:
            # Keep a champion already loaded (the registry blinking is no reason to drop it);
            # with none loaded yet, the baseline serves.
            self.problem = str(exc)
            log.warning("%s: %s; serving %s", self.name, exc, self._current.source)

    async def _binding(self) -> Binding:
        """The binding to load from now; the last one read if the database cannot say."""
        if self._read_binding is not None:
            try:
                self.binding = await self._read_binding()
            # The database away: no change of binding can have been seen either.
            except Exception as exc:
                log.warning("%s: binding unreadable (%s); keeping %s", self.name, exc, self.binding)
        return self.binding

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
