"""The engine's worker: claim ready steps, run them, record results in batches, keep leases.

Loops (all in one event loop):
- claim: whenever woken (NOTIFY, a freed slot, or the safety poll) take ready steps up to the
  free concurrency and start a task per step;
- record: results are committed in batches (one transaction for everything that finished
  meanwhile), which is what makes the hot path cheap;
- starter: start admitted PENDING runs (woken by NOTIFY 'runs');
- stopper: for runs cancelled or past their deadline (woken by NOTIFY 'stop'), cut this
  replica's calls in flight and cancel the steps still waiting, batch by batch;
- upkeep: renew leases of in-flight steps, return expired leases of dead workers, refresh gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from ml.bindings import database_binding
from services.workflow_engine import step_log
from services.workflow_engine.retry_model import MODEL, RetryAdvisor
from services.workflow_engine.settings import EngineSettings
from services.workflow_engine.step_call import RunCache, StepLimits, run_step
from services.workflow_engine.stopper import StopReason, cut_stopped_steps, finish_stopping
from shared.agent_client import AgentClient
from shared.db.queue import queue_sizes
from shared.db.session import asyncpg_dsn
from shared.events.outbox import wakeup_channel
from shared.logs import bind
from shared.metrics import PlatformMetrics
from shared.state.leases import expire_leases, release_leases, renew_leases
from shared.state.progress import RunChange
from shared.state.runs import RunContext, start_runs, startable_runs
from shared.state.steps import (
    AttemptResult,
    ClaimedStep,
    claim_steps,
    record_results,
)
from shared.tracing import enabled as tracing_enabled
from shared.tracing import step_span

log = logging.getLogger(__name__)
LOOP_STOP_WARN_S = 10.0  # a loop slower than this to stop after its cancel is logged

RECORD_BATCH = 256
START_BATCH = 100

# Steps meant for this replica and ready, not yet claimed: how far behind it is. Counted up to
# its concurrency only, which is all the starter needs to know.
_OWN_BACKLOG = text(
    "SELECT count(*) FROM (SELECT 1 FROM step_runs WHERE status = 'READY' AND affinity = :owner "
    "LIMIT :enough) AS backlog"
)


class Executor:
    def __init__(
        self,
        settings: EngineSettings,
        sessionmaker: async_sessionmaker,
        client: AgentClient,
        metrics: PlatformMetrics,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.client = client
        self.metrics = metrics
        self.schema = settings.db_schema
        self.limits = StepLimits(settings.max_map_items, settings.max_rendered_chars)
        self.worker = settings.worker_id
        self.runs = RunCache(sessionmaker)
        self.advisor = RetryAdvisor(
            settings.mlflow_tracking_uri,
            settings.model_refresh_s,
            binding=database_binding(lambda: sessionmaker, MODEL),
        )
        self.inflight: dict[int, ClaimedStep] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.results: asyncio.Queue[AttemptResult | None] = asyncio.Queue()
        self.step_wake = asyncio.Event()
        self.run_wake = asyncio.Event()
        self.stop_wake = asyncio.Event()
        self._shutdown = asyncio.Event()  # set once: wakes the loops that only sleep
        self.stopping = False
        self._starter_held = False  # the starter waits for this replica's backlog to shrink
        # Why the engine cancelled a step's task (run cancelled, or past the run's deadline).
        self._stop_reasons: dict[int, StopReason] = {}
        self._loops: list[asyncio.Task[None]] = []
        # Renew well within a lease, and often enough that a short lease survives one miss.
        self._renew_every = min(settings.lease_seconds / 3, 2.0)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loops as background tasks."""
        loops = (
            self._listen,
            self._claim_loop,
            self._record_loop,
            self._starter,
            self._stopper,
            self._upkeep,
        )
        for loop in loops:
            self._loops.append(asyncio.create_task(self._forever(loop), name=loop.__name__))

    async def stop(self) -> None:
        """Stop claiming; let in-flight steps finish within the grace period, release the rest.

        Leases are still renewed while steps finish: otherwise another replica would take them
        over (and call the agents again) while this one is about to record their results.
        The loops are woken and end at their next turn rather than being cancelled: a task
        cancelled in the middle of a transaction can stay stuck in the driver (asyncpg#873),
        and the engine would never exit.
        """
        self.stopping = True
        self._wake_all()
        log.info(
            "shutting down: %d steps in flight, %g s to finish",
            len(self.tasks),
            self.settings.shutdown_grace_s,
        )
        clock = asyncio.get_running_loop()
        deadline = clock.time() + self.settings.shutdown_grace_s
        while self.tasks and (left := deadline - clock.time()) > 0:
            await asyncio.wait(list(self.tasks.values()), timeout=min(left, self._renew_every))
            with contextlib.suppress(Exception):  # the database may be away: try next round
                await self._renew()
        steps = list(self.tasks.values())
        for task in steps:
            task.cancel()  # an agent call: its connection closes, the agent is told to stop
        if steps:
            await asyncio.wait(steps, timeout=LOOP_STOP_WARN_S)
        self.results.put_nowait(None)  # the record loop ends once what came before is recorded
        await self._end_loops()
        unfinished = list(self.inflight)
        if unfinished:
            with contextlib.suppress(Exception):
                async with self.sessionmaker() as session, session.begin():
                    await release_leases(
                        session, owner=self.worker, step_ids=unfinished, schema=self.schema
                    )
        log.info("shut down: %d unfinished steps released", len(unfinished))

    def _wake_all(self) -> None:
        for event in (self.step_wake, self.run_wake, self.stop_wake, self._shutdown):
            event.set()

    async def _end_loops(self) -> None:
        """Wait for the loops to end on their own; cancel any still running (saying where it
        was), and leave behind one that does not even end then, rather than never exiting."""
        if not self._loops:  # asyncio.wait refuses an empty set (loops never started)
            return
        _, running = await asyncio.wait(self._loops, timeout=LOOP_STOP_WARN_S)
        for task in running:
            where = io.StringIO()
            task.print_stack(file=where)
            log.warning(
                "shutting down: loop %s has not ended; cancelling it\n%s",
                task.get_name(),
                where.getvalue(),
            )
            task.cancel()
        if running:
            _, stuck = await asyncio.wait(running, timeout=LOOP_STOP_WARN_S)
            for task in stuck:
                log.error("shutting down: loop %s ignored its cancel; left behind", task.get_name())

    async def _forever(self, loop: Any) -> None:
        # A loop that fails (database restarting, say) starts again after a pause.
        while not self.stopping:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("engine loop %s failed: %s; restarting", loop.__name__, exc)
                await asyncio.sleep(0.5)

    # ---- wake-ups --------------------------------------------------------------------------
    async def _listen(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))

        def on_notify(_c: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload == "runs":
                self.run_wake.set()
            elif payload in ("steps", self.worker):
                self.step_wake.set()
            elif payload == "stop":
                self.stop_wake.set()
            # Steps meant for another replica: ours only after `sticky_seconds`, found by
            # the safety poll.

        try:
            await conn.add_listener(wakeup_channel(self.schema), on_notify)
            # Anything that happened while we were not listening is found by this wake-up.
            self.run_wake.set()
            self.step_wake.set()
            self.stop_wake.set()
            while not conn.is_closed():
                await self._wait(self._shutdown, self.settings.poll_interval_s)
                if self.stopping:
                    return
                await conn.execute("SELECT 1")  # notices a dead connection
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    # ---- claiming and running ------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.stopping:
            self.step_wake.clear()
            free = self.settings.concurrency - len(self.inflight)
            if free > 0:
                limit = min(free, self.settings.claim_batch)
                async with self.sessionmaker() as session, session.begin():
                    claimed = await claim_steps(
                        session,
                        owner=self.worker,
                        limit=limit,
                        lease_s=self.settings.lease_seconds,
                        schema=self.schema,
                        sticky_s=self.settings.sticky_seconds,
                    )
                if claimed and self._starter_held:
                    self.run_wake.set()  # claiming made room for new runs
                for step in claimed:
                    self.metrics.steps_claimed.labels(step.agent).inc()
                    self.inflight[step.id] = step
                    if not self.stopping:  # claimed as the shutdown began: released unrun
                        self.tasks[step.id] = asyncio.create_task(self._execute(step))
                if len(claimed) == limit:
                    continue  # probably more waiting
            await self._wait(self.step_wake, self.settings.poll_interval_s)

    async def _execute(self, step: ClaimedStep) -> None:
        step_log.step_claimed(step)  # binds the step for every line of this task
        try:
            run = await self.runs.get(step.run_id)
            bind(trace_id=run.trace_id)  # this task's lines; the task ends with the step
            attributes = step_log.span_attributes(step) if tracing_enabled() else {}
            with step_span(run.trace_id, f"step {step.step_id}", attributes=attributes) as span:
                result, latency = await run_step(
                    step,
                    run,
                    self.client,
                    worker=self.worker,
                    limits=self.limits,
                    advisor=self.advisor,
                )
                step_log.record_outcome(span, result)
            if latency is not None:
                self.metrics.agent_coordination_latency.labels(step.agent, step.action).observe(
                    latency
                )
        except asyncio.CancelledError:
            if self.stopping:
                raise  # shutdown: the lease is released and the step re-runs elsewhere
            # The engine stopped this call (closing the agent connection asks the agent to
            # stop): the step ends CANCELLED, or TIMED_OUT when the run ran out of time.
            outcome, message = self._stop_reasons.pop(step.id, ("cancelled", "run cancelled"))
            code = "cancelled" if outcome == "cancelled" else "run_timeout"
            result = AttemptResult(
                step=step,
                outcome=outcome,
                worker=self.worker,
                error={"code": code, "message": message, "retryable": False},
            )
        except Exception as exc:  # a bug or a lost database: fail this attempt, retryably
            log.exception("step %s of run %s crashed in the engine", step.step_id, step.run_id)
            result = AttemptResult(
                step=step,
                outcome="failed",
                worker=self.worker,
                error={"code": "engine_error", "message": repr(exc), "retryable": True},
                retry_in_s=1.0 if step.attempts < step.max_attempts else None,
            )
        finally:
            self.tasks.pop(step.id, None)
            self._stop_reasons.pop(step.id, None)  # a stop that came too late to matter
        self.metrics.steps_executed.labels(step.agent, result.outcome).inc()
        step_log.step_finished(result)
        self.results.put_nowait(result)

    # ---- recording -------------------------------------------------------------------------
    async def _record_loop(self) -> None:
        # Ends at the None that stop() queues after the last step task has finished.
        while True:
            batch: list[AttemptResult] = []
            item = await self.results.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= RECORD_BATCH or self.results.empty():
                    break
                item = self.results.get_nowait()
            if batch:
                await self._record(batch)
            if item is None:
                return

    async def _record(self, batch: list[AttemptResult]) -> None:
        delay = 0.2
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    changes = await record_results(
                        session, batch, schema=self.schema, owner=self.worker
                    )
                break
            except Exception as exc:  # keep the results and try again: they are not lost
                log.warning("recording %d results failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        loop = asyncio.get_running_loop()
        for result in batch:
            self.inflight.pop(result.step.id, None)
            if result.retry_in_s is not None:
                # Be awake when the retry is due rather than at the next safety poll.
                loop.call_later(result.retry_in_s, self.step_wake.set)
        self._observe(changes)
        self.step_wake.set()

    def _observe(self, changes: list[RunChange]) -> None:
        step_log.runs_changed(changes)
        for change in changes:
            if change.status in ("RUNNING", "COMPENSATING"):
                continue
            self.metrics.workflows_executed.labels(change.kind, change.status.value).inc()
            if change.duration_s is not None:
                self.metrics.workflow_duration.labels(change.kind).observe(change.duration_s)

    # ---- starting runs -----------------------------------------------------------------
    async def _starter(self) -> None:
        while not self.stopping:
            self.run_wake.clear()
            started, room = await self.start_runs_round()
            if room <= 0 or started < room:
                await self._wait(self.run_wake, self.settings.poll_interval_s * 2)

    async def start_runs_round(self) -> tuple[int, int]:
        """Start admitted runs while this replica keeps up with the steps it already has.

        A started run's steps have this replica's affinity, so a busy replica leaves new runs
        to idle ones instead of taking them all and having its steps taken over later.
        Returns (runs started, room there was).
        """
        started: dict[uuid.UUID, RunContext] = {}
        # Claims made while this round runs must wake the starter again: its count of the
        # backlog is from before them.
        self._starter_held = True
        async with self.sessionmaker() as session, session.begin():
            backlog = (
                await session.execute(
                    _OWN_BACKLOG, {"owner": self.worker, "enough": self.settings.concurrency}
                )
            ).scalar()
            room = min(START_BATCH, self.settings.concurrency - int(backlog or 0))
            run_ids = await startable_runs(session, limit=room) if room > 0 else []
            if run_ids:
                started = await start_runs(session, run_ids, schema=self.schema, owner=self.worker)
            # Before the commit: its NOTIFY may have the roots claimed before we resume.
            for run_id, context in started.items():
                self.runs.put(run_id, context)
        self._starter_held = room <= 0
        for context in started.values():
            self.metrics.runs_started.labels(context.spec.kind).inc()
        return len(started), room

    # ---- stopping runs -----------------------------------------------------------------
    async def _stopper(self) -> None:
        while not self.stopping:
            self.stop_wake.clear()
            await cut_stopped_steps(
                self.sessionmaker, self.inflight, self.tasks, reasons=self._stop_reasons
            )
            await finish_stopping(
                self.sessionmaker,
                schema=self.schema,
                owner=self.worker,
                observe=self._observe,
                going_on=lambda: not self.stopping,
            )
            await self._wait(self.stop_wake, self.settings.poll_interval_s)

    # ---- upkeep ---------------------------------------------------------------------------
    async def _upkeep(self) -> None:
        while not self.stopping:
            await self._wait(self._shutdown, self._renew_every)
            if self.stopping:
                return  # stop() renews the leases of the steps still finishing
            await self._renew()
            async with self.sessionmaker() as session, session.begin():
                expired = await expire_leases(session, limit=500, schema=self.schema)
            if expired:
                self.step_wake.set()
            await self.refresh_gauges()

    async def _renew(self) -> None:
        ids = list(self.inflight)
        if not ids:
            return
        async with self.sessionmaker() as session, session.begin():
            await renew_leases(
                session, owner=self.worker, step_ids=ids, lease_s=self.settings.lease_seconds
            )

    async def refresh_gauges(self) -> None:
        """Set active_workflows and workflow_queue_size (shared/db/queue.py counts the queue)."""
        async with self.sessionmaker() as session:
            sizes = await queue_sizes(session)
            active = (await session.execute(_ACTIVE)).scalar_one()
        self.metrics.workflow_queue_size.set(sizes.queued)
        self.metrics.active_workflows.set(active)


_ACTIVE = text(
    "SELECT count(*) FROM workflow_runs WHERE status IN ('PENDING', 'RUNNING', 'COMPENSATING')"
)
