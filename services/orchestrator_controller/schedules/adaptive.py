"""Adaptive schedules: after each run, the scheduler agent picks the next fire.

The ticker asks data-scheduler's `next_interval` (over HTTP, with the service token) with the
schedule's collect history: per run, the fire time and the rows its collect steps found new.
The fire time stands for the collect's time (a run starts within seconds of its fire) and keeps
the history on the controller's clock. A schedule never stops firing: at each fire its next one
is set provisionally to the longest interval, so a run that never ends or an agent that never
answers still leaves a fire due; when the agent is unreachable the controller falls back to the
last interval (or the midpoint of the bounds) and says so in the reason.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.schedules.service import set_next_fire
from services.orchestrator_controller.settings import ControllerSettings
from shared.agent_client import AgentCallError, AgentClient
from shared.db.models import Schedule

log = logging.getLogger(__name__)

AGENT = "data-scheduler"
ACTION = "next_interval"
TIMEOUT_S = 5.0  # the ticker holds the schedule's row lock while it waits
HISTORY_RUNS = 400  # the newest runs sent as history (what the model looks at)

_HISTORY = text(
    """
SELECT f.fire_at, sum((st.output->>'count')::bigint) AS rows
FROM schedule_fires f
JOIN step_runs st ON st.run_id = f.run_id
WHERE f.schedule_id = :sid AND st.agent = 'data-collector' AND st.action = 'collect'
  AND st.status = 'SUCCEEDED' AND jsonb_typeof(st.output->'count') = 'number'
GROUP BY f.fire_at
ORDER BY f.fire_at DESC
LIMIT :limit
"""
)


def pending(schedule: Schedule) -> bool:
    """Whether the schedule's last run has no decision yet."""
    decided = (schedule.adaptive_decision or {}).get("run_id")
    return schedule.last_run_id is not None and decided != str(schedule.last_run_id)


class Adviser:
    """Asks the scheduler agent for an adaptive schedule's next interval."""

    def __init__(self, settings: ControllerSettings, client: AgentClient | None = None) -> None:
        self.client = client or AgentClient(
            settings.agent_urls, settings.service_token.get_secret_value()
        )

    async def aclose(self) -> None:
        """Close the agent client's connections."""
        await self.client.aclose()

    async def history(self, session: AsyncSession, schedule: Schedule) -> list[dict[str, Any]]:
        """The schedule's collects, oldest first: [{'at', 'rows'}]."""
        rows = await session.execute(_HISTORY, {"sid": schedule.id, "limit": HISTORY_RUNS})
        return [{"at": r.fire_at.isoformat(), "rows": int(r.rows)} for r in reversed(rows.all())]

    async def decide(self, session: AsyncSession, schedule: Schedule, now: datetime) -> None:
        """Ask for the interval after the last run, record the decision, set the next fire."""
        assert schedule.max_interval_s is not None
        low, high = schedule.min_interval_s, schedule.max_interval_s
        params = {
            "history": await self.history(session, schedule),
            "min_interval_s": low,
            "max_interval_s": high,
        }
        previous = schedule.adaptive_decision or {}
        try:
            reply = await self.client.call(
                AGENT,
                ACTION,
                params,
                idempotency_key=f"schedule:{schedule.id}:after:{schedule.last_run_id}",
                timeout_s=TIMEOUT_S,
            )
            out = reply.output
            interval = min(max(float(out["interval_s"]), low), high)
            reason, decider = str(out["reason"]), out["decider"]
        except (AgentCallError, KeyError, TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, AgentCallError) else f"bad answer: {exc}"
            log.warning("schedule %s: %s unreachable: %s", schedule.name, AGENT, message)
            last = previous.get("interval_s")
            interval = float(last) if last is not None else (low + high) / 2
            what = "the last interval" if last is not None else "the midpoint of the bounds"
            reason = f"{AGENT} unavailable ({message}): fell back to {what}"
            decider = {"model": None, "version": None, "source": "fallback"}
        base = schedule.last_fire_at or now
        # Fire times key runs, so they only grow; a run that overran its interval fires now.
        fire_at = max(base + timedelta(seconds=interval), now)
        schedule.adaptive_decision = {
            "run_id": str(schedule.last_run_id),
            "interval_s": round(interval, 3),
            "next_fire_at": fire_at.isoformat(),
            "reason": reason,
            "decided_at": now.isoformat(),
            "model": decider.get("model"),
            "version": decider.get("version"),
            "source": decider.get("source"),
        }
        set_next_fire(schedule, fire_at)


def provisional(schedule: Schedule, fired_at: datetime, now: datetime) -> None:
    """After a fire: the next one at the longest interval, until the agent picks an earlier."""
    assert schedule.max_interval_s is not None
    set_next_fire(schedule, max(fired_at, now) + timedelta(seconds=schedule.max_interval_s))
