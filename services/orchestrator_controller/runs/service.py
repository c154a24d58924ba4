"""Accepting, listing, showing and cancelling runs."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.agents.catalog import check_spec_agents
from services.orchestrator_controller.definitions import service as definitions
from services.orchestrator_controller.policies.service import Decision, Policies
from services.orchestrator_controller.runs.inputs import bind_inputs
from services.orchestrator_controller.runs.schemas import (
    CoordinateRequest,
    RunDetail,
    RunPage,
    RunSummary,
    StepOut,
)
from shared.db.models import IdempotencyRecord, StepRun, WorkflowRun
from shared.errors import AppError, Conflict, NotFound, ValidationFailed
from shared.spec.models import WorkflowSpec
from shared.spec.validation import deepest_path
from shared.state.machine import RunStatus
from shared.state.runs import NewRun, create_runs

IDEMPOTENCY_SCOPE = "coordinate"


@dataclass
class Accepted:
    run: WorkflowRun
    created: bool


def _request_hash(body: CoordinateRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Prepared:
    """A /coordinate request checked and bound, ready to be admitted and stored."""

    spec: WorkflowSpec
    inputs: dict[str, Any]
    priority: int
    idempotency_key: str | None
    fingerprint: str
    submitted_by: str | None = None
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    retry_of: uuid.UUID | None = None


def check_nesting(spec: WorkflowSpec, inputs: dict[str, Any], *, limit: int) -> None:
    """Refuse params, input defaults or inputs nested deeper than `limit` (422, nothing stored).

    Run before a request joins an admission batch: a value too deep to serialise must fail
    its own request, not the transaction it would share with others.
    """
    places: list[tuple[str, Any]] = [("inputs", inputs)]
    for name, declared in spec.inputs.items():
        places.append((f"spec.inputs.{name}.default", declared.default))
    for i, step in enumerate(spec.steps):
        places.append((f"spec.steps[{i}].params", step.params))
        if step.compensate is not None:
            places.append((f"spec.steps[{i}].compensate.params", step.compensate.params))
    for field_name, value in places:
        too_deep = deepest_path(value, limit=limit)
        if too_deep is not None:
            where = f"{field_name}.{too_deep}" if too_deep else field_name
            raise ValidationFailed(
                f"{field_name}: nested deeper than {limit} levels (at {where[:200]}); the limit "
                "is CONTROLLER_MAX_NESTING_DEPTH",
                code="too_deep",
            )


async def prepare_run(
    session: AsyncSession,
    *,
    body: CoordinateRequest,
    idempotency_key: str | None,
    policies: Policies | None = None,
    max_nesting_depth: int = 32,
    max_spec_bytes: int | None = None,
    submitted_by: str | None = None,
) -> Prepared:
    """Everything about accepting a run that needs no lock: resolve, shape, bind the inputs.

    An archived workflow is a 409 (`definition_archived`); an inline spec over
    `max_spec_bytes` a 413, as it would be if registered.
    """
    if body.spec is not None:
        check_nesting(body.spec, body.inputs, limit=max_nesting_depth)
        if max_spec_bytes is not None:
            definitions.check_spec_size(body.spec, limit=max_spec_bytes)
        await check_spec_agents(session, body.spec, prefix="spec.")
        spec = body.spec
    else:
        assert body.workflow is not None
        try:
            spec = await definitions.resolve(session, name=body.workflow, version=body.version)
        except NotFound as exc:
            raise ValidationFailed(f"workflow: {exc.message}", code="unknown_workflow") from exc
        check_nesting(spec, body.inputs, limit=max_nesting_depth)
    given = body.inputs
    if policies is not None:
        spec, given = policies.shape(spec, given)
    inputs = bind_inputs(spec, given)
    fingerprint = _request_hash(body) if idempotency_key is not None else ""
    return Prepared(spec, inputs, body.priority, idempotency_key, fingerprint, submitted_by)


RETRYABLE_RUN = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


async def prepare_retry(
    session: AsyncSession, *, run_id: uuid.UUID, submitted_by: str | None
) -> Prepared:
    """A new run of a failed (or cancelled) run's own spec and inputs that reuses the outputs
    of the steps that succeeded in it and runs the rest (Airflow's "clear failed tasks", as a
    new run so the failed one's history stays as it was).

    A compensated run is not retried: its succeeded steps were undone, so there is nothing
    to reuse and rerunning "from the failure" would skip effects that no longer exist.
    """
    old = await session.get(WorkflowRun, run_id)
    if old is None:
        raise NotFound(f"no workflow run {run_id}")
    if old.status not in RETRYABLE_RUN:
        raise Conflict(
            f"run {run_id} is {old.status}: only FAILED or CANCELLED runs can be retried "
            "from their failed steps",
            code="not_retryable",
        )
    return Prepared(
        spec=WorkflowSpec.model_validate(old.spec),
        inputs=old.inputs,
        priority=old.priority,
        idempotency_key=None,
        fingerprint="",
        submitted_by=submitted_by,
        retry_of=old.id,
    )


async def accept_prepared(
    session: AsyncSession,
    items: list[Prepared],
    *,
    schema: str | None,
    policies: Policies | None = None,
) -> list[Accepted | AppError]:
    """Store new PENDING runs in the caller's transaction, in order, as if one by one.

    A repeated Idempotency-Key gives the run the first request made (or a Conflict when the
    body differs), also between requests of the same batch. A run the policies do not admit
    now waits, PENDING with the reason, for the admission loop.
    """
    results: list[Accepted | AppError | None] = [None] * len(items)
    fresh: list[int] = []
    first_of_key: dict[str, int] = {}
    later_of_key: list[int] = []
    for i, item in enumerate(items):
        key = item.idempotency_key
        if key is None:
            fresh.append(i)
        elif key in first_of_key:
            later_of_key.append(i)
        else:
            first_of_key[key] = i
            known = await _claim_key(session, item)
            if known is None:
                fresh.append(i)
            else:
                results[i] = known
    decisions = [Decision(admit=True)] * len(fresh)
    if policies is not None and fresh:
        decisions = await policies.decide_many(
            session,
            [(items[i].spec, items[i].inputs, items[i].priority) for i in fresh],
            schema=schema,
        )
    runs = await create_runs(
        session,
        [
            NewRun(
                spec=items[i].spec,
                inputs=items[i].inputs,
                priority=items[i].priority,
                admitted=decision.admit,
                status_reason=decision.reason,
                run_id=items[i].run_id,
                submitted_by=items[i].submitted_by,
                retry_of=items[i].retry_of,
            )
            for i, decision in zip(fresh, decisions, strict=True)
        ],
        schema=schema,
    )
    for i, run in zip(fresh, runs, strict=True):
        results[i] = Accepted(run, created=True)
    created = set(fresh)
    for i in later_of_key:
        first = first_of_key[items[i].idempotency_key or ""]
        if first not in created:  # the key is older than this batch: its record says
            results[i] = await _claim_key(session, items[i])
        elif items[i].fingerprint != items[first].fingerprint:
            results[i] = _key_reused(items[i].idempotency_key or "")
        else:
            results[i] = Accepted(runs[fresh.index(first)], created=False)
    return [r for r in results if r is not None]


async def _claim_key(session: AsyncSession, item: Prepared) -> Accepted | AppError | None:
    """Record the item's key; None if it is new, else what the earlier request produced."""
    claimed = await session.execute(
        text(
            "INSERT INTO idempotency_records (scope, key, request_hash, resource_id) "
            "VALUES (:scope, :key, :hash, :rid) ON CONFLICT DO NOTHING RETURNING key"
        ),
        {
            "scope": IDEMPOTENCY_SCOPE,
            "key": item.idempotency_key,
            "hash": item.fingerprint,
            "rid": str(item.run_id),
        },
    )
    if claimed.first() is not None:
        return None
    record = await session.get(IdempotencyRecord, (IDEMPOTENCY_SCOPE, item.idempotency_key))
    assert record is not None
    if record.request_hash != item.fingerprint:
        return _key_reused(item.idempotency_key or "")
    existing = await session.get(WorkflowRun, uuid.UUID(record.resource_id))
    assert existing is not None
    return Accepted(existing, created=False)


def _key_reused(key: str) -> Conflict:
    return Conflict(
        f"Idempotency-Key {key!r} was used for a different request",
        code="idempotency_key_reused",
    )


async def accept_run(
    session: AsyncSession,
    *,
    body: CoordinateRequest,
    idempotency_key: str | None,
    schema: str | None,
    policies: Policies | None = None,
    submitted_by: str | None = None,
) -> Accepted:
    """Validate and store a new PENDING run (or return the run an earlier same key made)."""
    item = await prepare_run(
        session,
        body=body,
        idempotency_key=idempotency_key,
        policies=policies,
        submitted_by=submitted_by,
    )
    [result] = await accept_prepared(session, [item], schema=schema, policies=policies)
    if isinstance(result, AppError):
        raise result
    return result


def _duration_ms(start: Any, end: Any) -> float | None:
    return round((end - start).total_seconds() * 1000, 3) if start and end else None


def _summary(run: WorkflowRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "workflow": run.workflow_name,
        "version": run.workflow_version,
        "kind": run.kind,
        "status": run.status,
        "status_reason": run.status_reason,
        "priority": run.priority,
        "submitted_by": run.submitted_by,
        "retry_of": run.retry_of,
        "failed_step": run.failed_step,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": _duration_ms(run.started_at, run.finished_at),
    }


def parse_run_id(raw: str) -> uuid.UUID:
    """A run id from a path; anything that is not a UUID cannot name a run (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no workflow run {raw!r}") from None


async def get_run(session: AsyncSession, *, run_id: uuid.UUID) -> RunDetail:
    """A run with every step (map items summarised by status)."""
    run = await session.get(WorkflowRun, run_id)
    if run is None:
        raise NotFound(f"no workflow run {run_id}")
    rows = (
        await session.execute(
            select(StepRun)
            .where(StepRun.run_id == run_id, StepRun.map_index == -1)
            .order_by(StepRun.role, StepRun.id)
        )
    ).scalars()
    items = await session.execute(
        select(StepRun.step_id, StepRun.status, func.count())
        .where(StepRun.run_id == run_id, StepRun.map_index >= 0)
        .group_by(StepRun.step_id, StepRun.status)
    )
    per_step: dict[str, dict[str, int]] = {}
    for step_id, status, count in items:
        per_step.setdefault(step_id, {})[status] = count
    steps = [
        StepOut(
            step_id=s.step_id,
            role=s.role,
            agent=s.agent,
            action=s.action,
            status=s.status,
            status_reason=s.status_reason,
            attempts=s.attempts,
            max_attempts=s.max_attempts,
            depends_on=list(s.depends_on),
            ready_at=s.ready_at,
            started_at=s.started_at,
            finished_at=s.finished_at,
            duration_ms=_duration_ms(s.started_at, s.finished_at),
            output=s.output,
            error=s.error,
            attempt_log=s.attempt_log,
            map_items=per_step.get(s.step_id) if s.role == "action" else None,
        )
        for s in rows
    ]
    return RunDetail(
        **_summary(run),
        inputs=run.inputs,
        trace_id=run.trace_id,
        cancel_requested=run.cancel_requested,
        steps=steps,
    )


async def list_runs(
    session: AsyncSession,
    *,
    status: RunStatus | None,
    workflow: str | None,
    limit: int,
    offset: int,
    submitted_by: str | None = None,
) -> RunPage:
    """Runs newest first, filtered by status, workflow name and submitter."""
    query = select(WorkflowRun)
    count = select(func.count()).select_from(WorkflowRun)
    if status is not None:
        query = query.where(WorkflowRun.status == status)
        count = count.where(WorkflowRun.status == status)
    if workflow is not None:
        query = query.where(WorkflowRun.workflow_name == workflow)
        count = count.where(WorkflowRun.workflow_name == workflow)
    if submitted_by is not None:
        query = query.where(WorkflowRun.submitted_by == submitted_by)
        count = count.where(WorkflowRun.submitted_by == submitted_by)
    runs = (
        await session.execute(
            query.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id)
            .limit(limit)
            .offset(offset)
        )
    ).scalars()
    total = (await session.execute(count)).scalar_one()
    return RunPage(
        items=[RunSummary(**_summary(r)) for r in runs], total=total, limit=limit, offset=offset
    )
