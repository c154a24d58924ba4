"""Group admission: runs accepted at the same time share one transaction.

Admission is serialised (one advisory lock per schema, so replicas agree on the policies'
counts). One transaction per request made that lock the limit of `/coordinate`: every request
paid for the lock, the load queries and a commit while the others queued behind it. Requests
that arrive while a batch is being admitted now go together in the next one, as PostgreSQL
groups commits: one lock, one read of the load, one INSERT, one commit. Each request still
gets its own answer, and none before its run is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker

from services.orchestrator_controller.policies.service import Policies
from services.orchestrator_controller.runs.service import Accepted, Prepared, accept_prepared
from shared.db.errors import is_unavailable, refused_value
from shared.errors import AppError, ValidationFailed
from shared.metrics import PlatformMetrics

MAX_BATCH = 256
log = logging.getLogger(__name__)


class AdmissionQueue:
    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        policies: Policies,
        schema: str | None,
        metrics: PlatformMetrics,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.policies = policies
        self.schema = schema
        self._queued: list[tuple[Prepared, asyncio.Future[Accepted]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def accept(self, item: Prepared) -> Accepted:
        """Admit and store one run with whatever else is waiting; raise its own error."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        # Its caller may have gone (shield below): the outcome is then nobody's to read.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._queued.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        # shield: a client that hangs up must not cancel the batch its run is part of
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            try:
                results = await self._admit([item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1 or is_unavailable(exc):
                    _settle(batch[0][1], _as_request_error(exc))
                    continue
                # Nothing of the batch was stored. One request's unforeseen failure must stay
                # its own: admit each alone, so the others are stored and answered as usual.
                log.warning(
                    "admission of %d runs failed (%r); admitting one by one", len(batch), exc
                )
                for item, future in batch:
                    outcome: Accepted | BaseException
                    try:
                        [outcome] = await self._admit([item])
                    except Exception as alone:
                        outcome = _as_request_error(alone)
                    _settle(future, outcome)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)

    async def _admit(self, items: list[Prepared]) -> list[Accepted | AppError]:
        async with self.sessionmaker() as session, session.begin():
            results = await accept_prepared(
                session, items, schema=self.schema, policies=self.policies
            )
        self.metrics.admission_batch_size.observe(len(items))
        return results

    async def aclose(self) -> None:
        """Let the batch in flight finish (its runs are being committed)."""
        if self._worker is not None:
            with contextlib.suppress(Exception):
                await self._worker


def _settle(future: asyncio.Future[Accepted], result: Accepted | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        if result.created:
            log.info(
                "run accepted: %s v%s",
                result.run.workflow_name,
                result.run.workflow_version,
                extra={"run_id": str(result.run.id), "workflow": result.run.workflow_name},
            )
        future.set_result(result)


def _as_request_error(exc: Exception) -> Exception:
    """A failure of one request alone: a value PostgreSQL refuses is the request's fault (422);
    anything else (the database away, a bug) keeps its own handling."""
    reason = refused_value(exc)
    if reason is not None:
        return ValidationFailed(
            f"the database refused a value of this run ({reason}); nothing was stored",
            code="value_refused",
        )
    return exc
