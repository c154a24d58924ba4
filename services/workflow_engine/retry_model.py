"""The retry_strategy model in the engine: asked between attempts of `strategy: adaptive` steps.

The champion is loaded at start and re-checked every `model_refresh_s` in the background (never
per step); steps with the static policy never reach this module. The engine's hard limits (max
attempts, max interval, the run's deadline) are clamped outside the model, and every decision
is returned with its provenance for the step's attempt log and retry event.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any

from ml.bindings import BindingReader
from ml.retry_strategy.policy import FailureContext, RetryDecision, StaticExponential, clamp
from ml.slot import ModelSlot

log = logging.getLogger(__name__)
MODEL = "retry_strategy"


class RetryAdvisor:
    """The engine's model slot for retry decisions, with per-agent recent health."""

    def __init__(
        self,
        tracking_uri: str | None,
        refresh_s: float = 60.0,
        *,
        binding: BindingReader | None = None,
    ) -> None:
        self.slot = ModelSlot(
            MODEL,
            StaticExponential(),
            tracking_uri=tracking_uri,
            refresh_s=refresh_s,
            binding=binding,
        )
        self._health: dict[str, list[float]] = {}  # agent -> [error rate, latency ms]
        self._first_failure: OrderedDict[int, float] = OrderedDict()

    def provenance(self) -> dict[str, Any]:
        """`{"model", "version", "source"}` of the decider in use."""
        return self.slot.current.provenance()

    async def start(self) -> None:
        """Load the champion once, then watch the alias in the background."""
        await self.slot.start()

    async def stop(self) -> None:
        await self.slot.stop()

    async def refresh(self) -> None:
        """Load the champion when it changed; keep the current decider on any failure."""
        await self.slot.refresh()

    def observe(self, agent: str, *, ok: bool, latency_s: float) -> None:
        """Fold one call of an adaptive step into its agent's recent health."""
        health = self._health.setdefault(agent, [0.0, 100.0])
        health[0] += 0.2 * ((0.0 if ok else 1.0) - health[0])
        health[1] += 0.2 * (latency_s * 1000 - health[1])

    def forget(self, step_row: int) -> None:
        """The step succeeded or ended: its elapsed clock goes."""
        self._first_failure.pop(step_row, None)

    def decide(
        self,
        *,
        step_row: int,
        agent: str,
        attempt: int,
        attempts_left: int,
        max_interval_s: float,
        remaining_s: float | None,
        error: dict[str, Any],
        retry_after_s: float | None,
    ) -> tuple[RetryDecision, dict[str, Any]]:
        """The clamped decision after a failed attempt, and its record for the attempt log."""
        now = time.monotonic()
        first = self._first_failure.setdefault(step_row, now)
        self._first_failure.move_to_end(step_row)
        while len(self._first_failure) > 100_000:
            self._first_failure.popitem(last=False)
        error_rate, latency_ms = self._health.get(agent, [0.0, 100.0])
        failure = FailureContext(
            status=error.get("status"),
            error_class=str(error.get("code", "error")),
            retry_after_s=retry_after_s,
            attempt=attempt,
            elapsed_s=now - first,
            host_error_rate=error_rate,
            host_latency_ms=latency_ms,
            remaining_s=math.inf if remaining_s is None else remaining_s,
            attempts_left=attempts_left,
            max_interval_s=max_interval_s,
            retryable=True,  # the caller has already refused non-retryable errors
        )
        decider = self.slot.current  # one read: the old model or the new one, never half
        provenance = decider.provenance()
        try:
            decision = clamp(decider.predictor.decide(failure), failure)
        except Exception as exc:  # a broken model must not break the step: the baseline decides
            log.warning("retry_strategy v%s failed (%s); baseline decides", decider.version, exc)
            decision = clamp(StaticExponential().decide(failure), failure)
            provenance = {"model": MODEL, "version": None, "source": "baseline"}
        features = {
            k: v
            for k, v in vars(failure).items()
            if v is not None and not (isinstance(v, float) and math.isinf(v))
        }
        record = {
            "retry": decision.retry,
            "delay_s": round(decision.delay_s, 3),
            "reason": decision.reason,
            "failure": features,
            **provenance,
        }
        return decision, record

    def health(self) -> dict[str, Any]:
        """For the engine's /health: the decider in use and any registry problem."""
        return self.slot.health()[1]
