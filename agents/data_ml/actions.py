"""data-ml actions: `history` (what the platform recorded to learn from), `train` (one model,
trained, evaluated and registered), `report` (what a `train_models` run changed)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.context import ActionContext

registry = ActionRegistry("data-ml")
ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class HistoryBody(ActionBody):
    since_days: float = Field(
        30.0, gt=0, le=3650, description="look back this many days of finished runs"
    )


class TrainBody(ActionBody):
    model: str = Field(pattern=MODEL_NAME, description="registered model name, e.g. retry_strategy")
    quick: bool = Field(False, description="small data sets (tests and smoke runs)")
    seed: int = Field(20261201, ge=0, le=2**31 - 1, description="training seed")
    timeout_s: float = Field(1500.0, gt=0, le=7200, description="kill the training past this")


class TrainOutput(BaseModel):
    """One `train` output as `report` reads it (the other fields are kept as they came)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the model trained")
    promoted: bool = False


class ReportBody(ActionBody):
    results: list[TrainOutput] = Field(description="the `train` outputs (the fan-out's list)")
    history: dict[str, Any] | None = Field(None, description="the `history` output")


_HISTORY = """
SELECT count(DISTINCT s.run_id) AS runs,
       coalesce(sum(jsonb_array_length(s.attempt_log)), 0) AS attempts,
       count(*) FILTER (WHERE s.attempts > 1) AS retried_steps,
       count(*) FILTER (WHERE s.action = 'collect' AND s.status = 'SUCCEEDED') AS collects,
       count(*) FILTER (WHERE s.agent = 'data-fetch-retry') AS fetches,
       min(s.started_at) AS since, max(s.finished_at) AS until
FROM step_runs s
WHERE s.finished_at >= now() - make_interval(secs => :seconds)
"""


@registry.action(
    "history",
    HistoryBody,
    example={"since_days": 30},
    description="summarise the run history to learn from",
    read_only=True,
)
async def history_action(body: HistoryBody, ctx: ActionContext) -> dict[str, Any]:
    """Counts of what the platform recorded in the window: runs, step attempts, collects.

    Returns `{"runs", "attempts", "retried_steps", "collects", "fetches", "since", "until",
    "schema"}`; training reads the rows themselves from the same tables.
    """
    async with ctx.db_engine.connect() as conn:
        row = (
            (await conn.execute(text(_HISTORY), {"seconds": body.since_days * 86400}))
            .mappings()
            .one()
        )
    found = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    return {**found, "schema": ctx.settings.db_schema}


@registry.action(
    "train",
    TrainBody,
    example={"model": "retry_strategy", "quick": False},
    description="train, evaluate and register one model",
)
async def train_action(body: TrainBody, ctx: ActionContext) -> dict[str, Any]:
    """Train `model` on the platform's history (plus its simulator) and register a version.

    Runs `python -m ml.train` in a child process so a long fit never stalls this agent's event
    loop and a timeout can end it. Returns `{"model", "version", "promoted", "reason", "metric",
    "model_score", "baseline_score", "champion_score", "params", "seconds"}`; `promoted` says
    whether the champion alias moved (only when the version beats baseline and champion).
    """
    uri = ctx.settings.mlflow_tracking_uri
    if not uri:
        raise AgentError(
            "no model registry configured: set MLFLOW_TRACKING_URI", code="registry_missing"
        )
    command = [
        sys.executable, "-m", "ml.train", body.model, "--json", "--no-readme",
        "--tracking-uri", uri, "--seed", str(body.seed),
        "--database-url", ctx.settings.database_url, "--db-schema", ctx.settings.db_schema,
    ]  # fmt: skip
    if body.quick:
        command.append("--quick")
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), body.timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AgentError(
            f"training {body.model} took longer than {body.timeout_s:g} s", code="training_timeout"
        ) from None
    finally:
        if process.returncode is None:
            process.kill()
    code = process.returncode or 0
    if code != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise AgentError(
            f"training {body.model} failed: {' | '.join(tail)[:800]}",
            code="training_failed",
            retryable=code < 0,  # killed by a signal: worth another attempt
        )
    results = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    if len(results) != 1:
        raise AgentError(f"training {body.model} printed no result", code="training_failed")
    return dict(results[0])


@registry.action(
    "report",
    ReportBody,
    example={
        "results": [
            {"model": "retry_strategy", "version": "7", "promoted": True},
            {"model": "scheduling_intelligence", "version": "4", "promoted": False},
        ],
        "history": {"runs": 412, "attempts": 1890, "collects": 230},
    },
    description="summarise a train_models run",
    read_only=True,
)
async def report_action(body: ReportBody, ctx: ActionContext) -> dict[str, Any]:
    """Which models got a new champion and which kept theirs, with the scores that decided.

    Returns `{"trained", "promoted": [model...], "kept": [model...], "history", "models"}`.
    """
    results = [r.model_dump() for r in body.results]
    promoted = [r["model"] for r in results if r["promoted"]]
    kept = [r["model"] for r in results if not r["promoted"]]
    models = {
        r["model"]: {
            k: r.get(k)
            for k in ("version", "promoted", "reason", "metric", "model_score", "baseline_score")
        }
        for r in results
    }
    return {
        "trained": len(results),
        "promoted": promoted,
        "kept": kept,
        "history": body.history,
        "models": models,
    }
