"""The engine's side of stopping runs (cancelled, or past their deadline): cut the calls this
replica has in flight, and cancel the steps still waiting, one bounded transaction at a time
(shared/state/stopping.py), so no transaction holds a large run for long."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.state.progress import RunChange
from shared.state.steps import ClaimedStep
from shared.state.stopping import stop_round, stopping_among

# Runs one round works on: with STOP_BATCH steps per round, one large run or many small ones.
STOP_RUNS = 100

StopReason = tuple[Literal["cancelled", "timed_out"], str]


async def finish_stopping(
    sessionmaker: async_sessionmaker,
    *,
    schema: str | None,
    owner: str,
    observe: Callable[[list[RunChange]], None],
    going_on: Callable[[], bool] = lambda: True,
) -> None:
    """Cancel the waiting steps of every stopping run this replica can lock, round by round
    until none is left (or `going_on` says this replica is shutting down: another finishes);
    `observe` is told of the runs each round ended."""
    while going_on():
        async with sessionmaker() as session, session.begin():
            done = await stop_round(session, runs=STOP_RUNS, schema=schema, owner=owner)
        observe(done.changes)
        if not done.run_ids:
            return


async def cut_stopped_steps(
    sessionmaker: async_sessionmaker,
    inflight: dict[int, ClaimedStep],
    tasks: dict[int, asyncio.Task[None]],
    *,
    reasons: dict[int, StopReason],
) -> None:
    """Cancel the tasks of in-flight actions whose run is stopping, saying why in `reasons`
    (a compensation runs on): closing the agent connection asks the agent to stop."""
    actions = {row: step for row, step in inflight.items() if step.role == "action"}
    async with sessionmaker() as session:
        stopping = await stopping_among(session, list({s.run_id for s in actions.values()}))
    for step_row, step in actions.items():
        task = tasks.get(step_row)
        outcome = stopping.get(step.run_id)
        if outcome is not None and task is not None:
            why = "run cancelled" if outcome == "cancelled" else "run exceeded its timeout_s"
            reasons[step_row] = (outcome, why)
            task.cancel()
