"""data-scheduler actions: `validate` cron expressions, list `next_runs`, `recommend` a cadence."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.base.actions import ActionBody, ActionRegistry, AgentError
from agents.base.context import ActionContext
from agents.data_scheduler import cron, recommend

registry = ActionRegistry("data-scheduler")


def _zone_name(value: str) -> str:
    cron.zone(value)  # CronError (a ValueError) names the unknown zone
    return value


class ValidateBody(ActionBody):
    cron: str = Field(max_length=200, description="5-field cron expression or alias (@daily)")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Berlin")


class NextRunsBody(ActionBody):
    cron: str = Field(max_length=200, description="5-field cron expression or alias (@daily)")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Berlin")
    count: int = Field(5, ge=1, le=1000, description="how many run times to list")
    start: datetime | None = Field(
        None, description="list runs after this instant (default now); naive means local time"
    )

    _zone = field_validator("timezone")(_zone_name)


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime = Field(description="when the source was polled (naive means UTC)")
    changed: bool | None = Field(None, description="whether the poll found new or changed data")
    rows: int | None = Field(
        None, ge=0, description="rows the poll found new or changed (> 0 counts as a change)"
    )

    @model_validator(mode="after")
    def _one_outcome(self) -> Observation:
        if self.changed is None and self.rows is None:
            raise ValueError("an observation needs 'changed' or 'rows'")
        return self

    def poll(self) -> recommend.Poll:
        """This observation as a poll outcome."""
        at = self.at if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        changed = self.changed if self.changed is not None else bool(self.rows)
        return recommend.Poll(at=at, changed=changed)


class RecommendBody(ActionBody):
    history: list[Observation] = Field(
        min_length=2,
        max_length=100_000,
        description="past polls of the source: [{'at': iso, 'changed': bool} or {'at', 'rows'}]",
    )
    timezone: str = Field("UTC", max_length=64, description="time zone of the recommended cron")
    min_interval_s: int = Field(60, ge=60, description="never poll more often than this")
    max_interval_s: int = Field(
        7 * 86400, ge=60, le=7 * 86400, description="never poll less often than this"
    )

    _zone = field_validator("timezone")(_zone_name)

    @model_validator(mode="after")
    def _bounds(self) -> RecommendBody:
        if self.min_interval_s > self.max_interval_s:
            raise ValueError("min_interval_s is above max_interval_s")
        return self


def _iso(instants: list[datetime]) -> list[str]:
    return [i.isoformat() for i in instants]


@registry.action(
    "validate",
    ValidateBody,
    example={"cron": "30 2 * * 1-5", "timezone": "Europe/Berlin"},
    description="check a cron expression",
    read_only=True,
)
async def validate_action(body: ValidateBody, ctx: ActionContext) -> dict[str, Any]:
    """Check a cron expression and time zone.

    Returns `{"valid": true, "cron", "timezone", "description", "next_run"}` or
    `{"valid": false, "cron", "timezone", "error"}` (an invalid expression is an answer here,
    not a failure).
    """
    try:
        cron.zone(body.timezone)
        cron.parse(body.cron)
        runs = cron.next_runs(body.cron, body.timezone, 1, datetime.now(UTC))
    except cron.CronError as exc:
        return {"valid": False, "cron": body.cron, "timezone": body.timezone, "error": str(exc)}
    return {
        "valid": True,
        "cron": body.cron,
        "timezone": body.timezone,
        "description": cron.describe(body.cron),
        "next_run": runs[0].isoformat() if runs else None,
    }


@registry.action(
    "next_runs",
    NextRunsBody,
    example={"cron": "0 */6 * * *", "timezone": "UTC", "count": 3},
    description="list upcoming run times",
    read_only=True,
)
async def next_runs_action(body: NextRunsBody, ctx: ActionContext) -> dict[str, Any]:
    """List the next run times, DST-correct, as ISO-8601 strings with their UTC offset.

    Returns `{"cron", "timezone", "next_runs": ["2026-03-29T03:30:00+02:00", ...]}`; an
    expression that never fires again (say 30 February) lists fewer runs than asked.
    """
    try:
        cron.parse(body.cron)
    except cron.CronError as exc:
        raise AgentError(str(exc), code="invalid_cron") from exc
    start = body.start or datetime.now(UTC)
    runs = await asyncio.to_thread(cron.next_runs, body.cron, body.timezone, body.count, start)
    return {"cron": body.cron, "timezone": body.timezone, "next_runs": _iso(runs)}


@registry.action(
    "recommend",
    RecommendBody,
    example={
        "history": [
            {"at": "2026-01-15T08:00:00Z", "changed": True},
            {"at": "2026-01-15T09:00:00Z", "changed": False},
            {"at": "2026-01-15T10:00:00Z", "rows": 42},
        ],
        "min_interval_s": 300,
    },
    description="recommend a polling interval",
)
async def recommend_action(body: RecommendBody, ctx: ActionContext) -> dict[str, Any]:
    """Estimate the source's change rate from its poll history and recommend a cadence.

    Returns `{"recommended_interval_s", "cron", "timezone", "next_runs", "change_rate_per_hour",
    "mean_time_between_changes_s", "probability_of_change_per_poll", "method", "evidence":
    {"observations", "intervals", "changes", "span_s", "mean_poll_interval_s",
    "rate_standard_error_per_hour", "changes_by_hour"}}`.
    """
    polls = sorted((o.poll() for o in body.history), key=lambda p: p.at)
    if (polls[-1].at - polls[0].at).total_seconds() <= 0:
        raise AgentError(
            "the history spans no time: all polls have the same 'at'", code="insufficient_history"
        )
    estimate, changed, unchanged = recommend.estimate(polls)
    mean_between = 1 / estimate.rate_per_s
    interval = recommend.nice_interval(mean_between, body.min_interval_s, body.max_interval_s)
    expression = recommend.cron_for(interval)
    tz = cron.zone(body.timezone)
    intervals = len(changed) + len(unchanged)
    span = sum(changed) + sum(unchanged)
    upcoming = cron.next_runs(expression, body.timezone, 3, datetime.now(UTC))
    se = estimate.standard_error_per_s
    return {
        "recommended_interval_s": interval,
        "cron": expression,
        "timezone": body.timezone,
        "next_runs": _iso(upcoming),
        "change_rate_per_hour": round(estimate.rate_per_s * 3600, 6),
        "mean_time_between_changes_s": round(mean_between, 1),
        "probability_of_change_per_poll": round(-math.expm1(-estimate.rate_per_s * interval), 4),
        "method": estimate.method,
        "evidence": {
            "observations": len(polls),
            "intervals": intervals,
            "changes": len(changed),
            "span_s": span,
            "mean_poll_interval_s": round(span / intervals, 1) if intervals else None,
            "rate_standard_error_per_hour": round(se * 3600, 6) if se is not None else None,
            "changes_by_hour": recommend.changes_by_hour(polls, tz),
        },
    }


class Collected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime = Field(description="when the collect ran (naive means UTC)")
    rows: int | None = Field(None, ge=0, description="rows it found new since the previous one")
    cursor: float | None = Field(
        None, description="a numeric cursor (rows written so far): its advance counts as rows"
    )

    def row(self) -> tuple[datetime, int | None, float | None]:
        """(aware time, rows, cursor)."""
        return (self.at if self.at.tzinfo else self.at.replace(tzinfo=UTC)), self.rows, self.cursor


class NextIntervalBody(ActionBody):
    history: list[Collected] = Field(
        default_factory=list,
        max_length=10_000,
        description="the schedule's past collects, any order: [{'at', 'rows'} or {'at', 'cursor'}]",
    )
    min_interval_s: float = Field(ge=1, le=366 * 86400, description="never sooner than this")
    max_interval_s: float = Field(ge=1, le=366 * 86400, description="never later than this")
    budget_interval_s: float | None = Field(
        None, gt=0, description="the mean interval to spend (default: geometric mid of the bounds)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> NextIntervalBody:
        if self.min_interval_s > self.max_interval_s:
            raise ValueError("min_interval_s is above max_interval_s")
        return self


@registry.action(
    "next_interval",
    NextIntervalBody,
    example={
        "history": [
            {"at": "2026-01-15T08:00:00+00:00", "rows": 120},
            {"at": "2026-01-15T09:00:00+00:00", "rows": 0},
            {"at": "2026-01-15T10:00:00+00:00", "rows": 35},
        ],
        "min_interval_s": 300,
        "max_interval_s": 21600,
    },
    description="the next poll interval",
    read_only=True,
)
async def next_interval_action(body: NextIntervalBody, ctx: ActionContext) -> dict[str, Any]:
    """How long to wait after the newest collect, by the scheduling model (or its baseline).

    Returns `{"interval_s", "next_at", "reason", "decider": {"model", "version", "source"},
    "observations"}`; `next_at` is the newest collect's time plus the interval (null without
    history).
    """
    history = recommend.collect_observations([c.row() for c in body.history])
    bounds = recommend.Bounds(body.min_interval_s, body.max_interval_s, body.budget_interval_s)
    decider = ctx.models[recommend.MODEL].current
    decision = recommend.next_interval(decider.predictor, history, bounds)
    next_at = (
        datetime.fromtimestamp(history[-1].at + decision.interval_s, UTC).isoformat()
        if history
        else None
    )
    return {
        "interval_s": round(decision.interval_s, 3),
        "next_at": next_at,
        "reason": decision.reason,
        "decider": decider.provenance(),
        "observations": len(history),
    }
