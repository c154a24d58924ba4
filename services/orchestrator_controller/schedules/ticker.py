"""The ticker: fires due schedules, exactly one run per tick across every controller replica.

Each schedule is claimed with `FOR UPDATE SKIP LOCKED`, so one replica handles it at a time;
its fire is a row keyed by (schedule, fire time) written in the same transaction as the run,
and the run's Idempotency-Key is `schedule:<id>:<fire time>`, so even a replica acting on a
stale view, or a restart in the middle of a tick, cannot start a second run for that tick.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orchestrator_controller.handoff import Handoff
from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.runs.schemas import CoordinateRequest
from services.orchestrator_controller.runs.service import accept_run
from services.orchestrator_controller.schedules import adaptive
from services.orchestrator_controller.schedules.service import (
    check_target,
    plan_from,
    set_next_fire,
    timing_of,
)
from services.orchestrator_controller.schedules.timing import backoff
from services.orchestrator_controller.settings import ControllerSettings
from shared.db.models import Schedule, WorkflowRun
from shared.errors import AppError
from shared.state.machine import RunStatus
from shared.tracing import run_span

log = logging.getLogger(__name__)

ACTIVE_RUN = "('PENDING', 'RUNNING', 'COMPENSATING')"
# A schedule is worth a look when its next fire is due, or when it waits for its last run
# to end (a buffered fire, a continuous schedule, an adaptive one owing its decision) and that
# run has ended.
_CLAIM = text(
    f"""
SELECT s.id FROM schedules s
WHERE s.enabled AND s.id <> ALL(:done)
  AND (s.next_due_at <= :now
       OR ((s.buffered_fire_at IS NOT NULL
            OR (s.trigger = 'continuous' AND s.next_fire_at IS NULL)
            OR (s.trigger = 'adaptive' AND s.last_run_id IS NOT NULL
                AND (s.adaptive_decision->>'run_id') IS DISTINCT FROM s.last_run_id::text))
           AND NOT EXISTS (SELECT 1 FROM workflow_runs r WHERE r.id = s.last_run_id
                           AND r.status IN {ACTIVE_RUN})))
ORDER BY s.next_due_at NULLS FIRST, s.id
LIMIT 1
FOR UPDATE OF s SKIP LOCKED
"""
)
_FIRE = text(
    "INSERT INTO schedule_fires (schedule_id, fire_at, outcome, detail) "
    "VALUES (:sid, :at, :outcome, :detail) "
    "ON CONFLICT (schedule_id, fire_at) DO UPDATE "
    "SET outcome = EXCLUDED.outcome, detail = EXCLUDED.detail "
    # only a buffered fire may be taken up again; any other existing fire is final
    "WHERE schedule_fires.outcome = 'buffered' AND EXCLUDED.outcome = 'started' "
    "RETURNING fire_at"
)


@dataclass(frozen=True)
class Fired:
    """A run a tick created: what its root span names, and whether to hand it to an engine."""

    run_id: uuid.UUID
    trace_id: str
    workflow: str
    schedule: str
    fire_at: datetime
    admitted: bool


class Ticker:
    """Fires due schedules every `schedule_tick_s`; `tick()` is one pass (tests call it)."""

    def __init__(
        self,
        settings: ControllerSettings,
        sessionmaker: async_sessionmaker,
        policies: Policies,
        clock: Callable[[], datetime],
        handoff: Handoff | None = None,
        max_per_round: int = 200,
        adviser: adaptive.Adviser | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.policies = policies
        self.clock = clock
        self.handoff = handoff
        self.max_per_round = max_per_round
        self.adviser = adviser or adaptive.Adviser(settings)

    async def run(self) -> None:
        """Tick every `schedule_tick_s` for the life of the app."""
        try:
            while True:
                await self.settings.live.sleep("schedule_tick_s")
                try:
                    await self.tick()
                except Exception as exc:  # database restarting: try again next tick
                    log.warning("schedule tick failed: %s", exc)
        finally:
            await self.adviser.aclose()

    async def tick(self) -> list[uuid.UUID]:
        """Enable seed schedules whose workflow appeared, then fire what is due; return runs."""
        await self.enable_ready_seeds()
        started: list[uuid.UUID] = []
        done: list[uuid.UUID] = []
        while len(done) < self.max_per_round:
            now = self.clock()
            fired: list[Fired] = []
            claimed_ns = time.time_ns()  # the runs' root spans start with the claim
            async with self.sessionmaker() as session, session.begin():
                row = (await session.execute(_CLAIM, {"now": now, "done": done})).first()
                if row is None:
                    break
                done.append(row.id)
                schedule = await session.get(Schedule, row.id)
                assert schedule is not None
                started += await self._process(session, schedule, now, fired)
            for fire in fired:  # committed: each run's trace starts, as on POST /coordinate
                with run_span(
                    fire.trace_id,
                    "schedule",
                    attributes={
                        "run_id": str(fire.run_id),
                        "workflow": fire.workflow,
                        "schedule": fire.schedule,
                        "fire_at": fire.fire_at.isoformat(),
                    },
                    start_time=claimed_ns,
                ):
                    if fire.admitted and self.handoff is not None:
                        self.handoff.kick(fire.run_id)
        return started

    async def enable_ready_seeds(self) -> None:
        """Enable schedules created disabled because their workflow was not registered yet."""
        async with self.sessionmaker() as session, session.begin():
            rows = await session.execute(
                text(
                    "SELECT id FROM schedules WHERE auto_enable AND NOT enabled "
                    "FOR UPDATE SKIP LOCKED"
                )
            )
            for (schedule_id,) in rows.all():
                schedule = await session.get(Schedule, schedule_id)
                assert schedule is not None
                try:
                    await check_target(
                        session,
                        workflow=schedule.workflow_name,
                        version=schedule.workflow_version,
                        inputs=schedule.inputs,
                    )
                except AppError as exc:
                    reason = f"disabled until it validates: {exc.message}"
                    if schedule.status_reason != reason:
                        schedule.status_reason = reason
                    continue
                log.info("schedule %s: workflow available, enabling", schedule.name)
                schedule.enabled, schedule.auto_enable, schedule.status_reason = True, False, None
                plan_from(schedule, self.clock())

    async def _active(self, session: AsyncSession, run_id: uuid.UUID | None) -> bool:
        if run_id is None:
            return False
        status = await session.scalar(
            text("SELECT status FROM workflow_runs WHERE id = :id"), {"id": run_id}
        )
        return status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPENSATING)

    async def _record(
        self, session: AsyncSession, schedule: Schedule, at: datetime, outcome: str, detail: str
    ) -> None:
        await session.execute(
            _FIRE, {"sid": schedule.id, "at": at, "outcome": outcome, "detail": detail}
        )

    async def _start(
        self, session: AsyncSession, schedule: Schedule, at: datetime, fired: list[Fired]
    ) -> uuid.UUID | None:
        """Start the run of the fire at `at`; None if that fire exists already or fails."""
        claimed = await session.execute(
            _FIRE, {"sid": schedule.id, "at": at, "outcome": "started", "detail": None}
        )
        if claimed.first() is None:
            return None  # this tick has fired already
        body = CoordinateRequest(
            workflow=schedule.workflow_name,
            version=schedule.workflow_version,
            inputs=schedule.inputs,
            priority=schedule.priority,
        )
        try:
            async with session.begin_nested():
                accepted = await accept_run(
                    session,
                    body=body,
                    idempotency_key=f"schedule:{schedule.id}:{at.isoformat()}",
                    schema=self.settings.db_schema,
                    policies=self.policies,
                    submitted_by=f"schedule:{schedule.id}",
                )
        except AppError as exc:
            log.warning("schedule %s: fire at %s failed: %s", schedule.name, at, exc.message)
            await session.execute(
                text(
                    "UPDATE schedule_fires SET outcome = 'failed', detail = :detail "
                    "WHERE schedule_id = :sid AND fire_at = :at"
                ),
                {"detail": exc.message, "sid": schedule.id, "at": at},
            )
            schedule.status_reason = f"fire at {at.isoformat()} failed: {exc.message}"
            return None
        run = accepted.run
        await session.execute(
            text(
                "UPDATE schedule_fires SET run_id = :run WHERE schedule_id = :sid AND fire_at = :at"
            ),
            {"run": run.id, "sid": schedule.id, "at": at},
        )
        schedule.last_run_id, schedule.last_fire_at, schedule.status_reason = run.id, at, None
        if accepted.created:
            fired.append(
                Fired(
                    run_id=run.id,
                    trace_id=run.trace_id,
                    workflow=run.workflow_name,
                    schedule=schedule.name,
                    fire_at=at,
                    admitted=run.admitted_at is not None,
                )
            )
        return run.id

    async def _process(
        self, session: AsyncSession, schedule: Schedule, now: datetime, fired: list[Fired]
    ) -> list[uuid.UUID]:
        active = await self._active(session, schedule.last_run_id)
        if schedule.trigger == "continuous":
            return await self._continuous(session, schedule, now, active, fired)
        if schedule.trigger == "adaptive":
            return await self._adaptive(session, schedule, now, active, fired)
        started: list[uuid.UUID] = []
        if schedule.buffered_fire_at is not None and not active:
            run_id = await self._start(session, schedule, schedule.buffered_fire_at, fired)
            schedule.buffered_fire_at = None
            if run_id is not None:
                started.append(run_id)
                active = True
        if (
            schedule.next_fire_at is None
            or schedule.next_due_at is None
            or schedule.next_due_at > now
        ):
            return started
        timing = timing_of(schedule)
        assert timing is not None
        keep = 1 if schedule.catchup == "latest" else schedule.max_catchup
        fires, total = timing.fires_between(schedule.next_fire_at, now, keep=keep)
        if schedule.catchup == "skip":
            # late by more than the grace (and the jitter): the controller was down; skip it
            late = timedelta(
                seconds=self.settings.live.current.schedule_misfire_grace_s + schedule.jitter_s
            )
            fires = [f for f in fires if f >= now - late]
        if total > len(fires):
            schedule.missed_fires += total - len(fires)
            log.info(
                "schedule %s: %d missed fires not run (catch-up %s)",
                schedule.name,
                total - len(fires),
                schedule.catchup,
            )
        for fire in fires:
            if active and schedule.overlap == "skip":
                await self._record(session, schedule, fire, "skipped", "previous run still going")
            elif active and schedule.overlap == "buffer_one":
                if schedule.buffered_fire_at is None:
                    await self._record(
                        session, schedule, fire, "buffered", "runs after the previous run ends"
                    )
                    schedule.buffered_fire_at = fire
                else:
                    await self._record(
                        session, schedule, fire, "skipped", "a fire is already buffered"
                    )
            else:
                run_id = await self._start(session, schedule, fire, fired)
                if run_id is not None:
                    started.append(run_id)
                    active = True
        set_next_fire(schedule, timing.next_after(now))
        return started

    async def _continuous(
        self,
        session: AsyncSession,
        schedule: Schedule,
        now: datetime,
        active: bool,
        fired: list[Fired],
    ) -> list[uuid.UUID]:
        if active:
            set_next_fire(schedule, None)
            return []
        if schedule.next_fire_at is None:
            set_next_fire(schedule, await self._after_last_run(session, schedule, now))
        assert schedule.next_fire_at is not None and schedule.next_due_at is not None
        if schedule.next_due_at > now:
            return []
        run_id = await self._start(session, schedule, schedule.next_fire_at, fired)
        if run_id is None:
            schedule.consecutive_failures += 1
            wait = backoff(
                schedule.consecutive_failures,
                schedule.backoff_initial_s,
                schedule.backoff_max_s,
            )
            set_next_fire(schedule, now + wait)
            return []
        set_next_fire(schedule, None)
        return [run_id]

    async def _adaptive(
        self,
        session: AsyncSession,
        schedule: Schedule,
        now: datetime,
        active: bool,
        fired: list[Fired],
    ) -> list[uuid.UUID]:
        """Decide the next fire once the last run has ended; fire when due."""
        if not active and adaptive.pending(schedule):
            await self.adviser.decide(session, schedule, now)
        if (
            schedule.next_fire_at is None
            or schedule.next_due_at is None
            or schedule.next_due_at > now
        ):
            return []
        fire = schedule.next_fire_at
        adaptive.provisional(schedule, fire, now)
        if active and schedule.overlap != "allow":
            await self._record(session, schedule, fire, "skipped", "previous run still going")
            return []
        run_id = await self._start(session, schedule, fire, fired)
        return [] if run_id is None else [run_id]

    async def _after_last_run(
        self, session: AsyncSession, schedule: Schedule, now: datetime
    ) -> datetime:
        """When the next continuous run may start, given how the last one went."""
        last = (
            await session.get(WorkflowRun, schedule.last_run_id) if schedule.last_run_id else None
        )
        if last is None:
            return now
        # Starts are spaced from the previous fire (its nominal start), and fire times only
        # ever grow, since each one keys a run.
        started = schedule.last_fire_at or last.started_at or last.created_at
        ended = max(last.finished_at or now, started)
        if last.status == RunStatus.SUCCEEDED:
            schedule.consecutive_failures = 0
        else:
            schedule.consecutive_failures += 1
        wait = backoff(
            schedule.consecutive_failures, schedule.backoff_initial_s, schedule.backoff_max_s
        )
        return max(
            ended + wait + timedelta(milliseconds=1),
            started + timedelta(seconds=schedule.min_interval_s),
        )
