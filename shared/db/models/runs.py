"""Workflow definitions, runs and their steps, and the idempotency records of submissions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models.base import Base, Json


class WorkflowDefinition(Base):
    """A registered workflow spec; (name, version) is immutable once stored."""

    __tablename__ = "workflow_definitions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[Json]
    spec_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), server_default="api")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set once archived: hidden from listings and from new runs, kept for the runs made of it
    # (as Airflow deactivates a DAG rather than deleting it).
    archived_at: Mapped[datetime | None]


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow_name: Mapped[str] = mapped_column(String(100))
    workflow_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[Json]
    inputs: Mapped[Json]
    status: Mapped[str] = mapped_column(String(24))
    status_reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_step: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str] = mapped_column(String(32))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Who asked for it: the API key's id, or `schedule:<id>`; NULL for runs older than 0008.
    submitted_by: Mapped[str | None] = mapped_column(String(100))
    # The failed run this one retries (its succeeded steps' outputs are reused, not rerun).
    retry_of: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    admitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_workflow_runs_status_created", "status", "created_at"),
        Index("ix_workflow_runs_name_created", "workflow_name", "created_at"),
        Index("ix_workflow_runs_submitter_created", "submitted_by", "created_at"),
        Index(
            "ix_workflow_runs_retry_of", "retry_of", postgresql_where=text("retry_of IS NOT NULL")
        ),
        # The retention purge's pick, oldest finished first (shared/state/retention.py).
        Index(
            "ix_workflow_runs_finished",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        # The starter's pick (highest priority, oldest first) reads only the runs it takes,
        # however many are waiting.
        Index(
            "ix_workflow_runs_startable",
            text("priority DESC"),
            "created_at",
            postgresql_where=text("status = 'PENDING' AND admitted_at IS NOT NULL"),
        ),
        # The same for runs a policy holds back (the controller admits them in this order).
        Index(
            "ix_workflow_runs_held",
            text("priority DESC"),
            "created_at",
            "id",
            postgresql_where=text("status = 'PENDING' AND admitted_at IS NULL"),
        ),
        {"postgresql_with": {"fillfactor": 80}},
    )


class StepRun(Base):
    """One step of a run; a `map_over` step has a parent row (map_index -1) and one per item."""

    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    step_id: Mapped[str] = mapped_column(String(64))
    # "action" runs the step's action; "compensation" runs its compensate action (saga)
    role: Mapped[str] = mapped_column(String(16), server_default="action")
    map_index: Mapped[int] = mapped_column(Integer, server_default="-1")
    agent: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    depends_on: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    status: Mapped[str] = mapped_column(String(24))
    status_reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    # on a map_over parent: how many children may be READY or RUNNING at once
    fanout_limit: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    # The engine replica that holds this run's context and records its results: it claims the
    # step first, others only once the step has waited `ENGINE_STICKY_SECONDS` (as Temporal's
    # sticky task queues). Keeps one run's steps off two replicas' locks; NULL: anyone.
    affinity: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    output: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[Json | None]
    attempt_log: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ready_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    attempt_started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The steps whose outputs this row's templates reference (shared/state/needs.py): a claim
    # reads those outputs only; empty: none; NULL (rows older than 0017): every one of the run.
    needs: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)))

    __table_args__ = (
        UniqueConstraint("run_id", "step_id", "role", "map_index", name="uq_step_runs_identity"),
        Index(
            "ix_step_runs_claimable",
            "priority",
            "id",
            postgresql_where=text("status IN ('READY', 'RETRY_WAIT')"),
        ),
        # The running steps, for the lease expiry scan. Keyed by `id`, not by
        # `lease_expires_at`: a lease renewal then changes no indexed column and is HOT.
        Index("ix_step_runs_running", "id", postgresql_where=text("status = 'RUNNING'")),
        # A replica's own backlog (the starter asks before every round).
        Index("ix_step_runs_ready_affinity", "affinity", postgresql_where=text("status = 'READY'")),
        # A stopping run's waiting steps, cancelled batch by batch (shared/state/stopping.py).
        Index(
            "ix_step_runs_waiting",
            "run_id",
            postgresql_where=text(
                "role = 'action' AND status IN ('PENDING', 'READY', 'RETRY_WAIT')"
            ),
        ),
        # Room on each page for the new version of an updated row (0017).
        {"postgresql_with": {"fillfactor": 80}},
    )


class IdempotencyRecord(Base):
    """A client's Idempotency-Key and what it produced, so a repeat returns the same thing."""

    __tablename__ = "idempotency_records"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    # The purge deletes a run's keys with it (a repeat then starts anew, as after any expiry).
    __table_args__ = (Index("ix_idempotency_records_resource", "resource_id"),)


# The API manager looks for recent throttled step attempts, and counts recent admissions per
# host; these keep both lookups off a full scan of the run and step tables.
Index(
    "ix_step_runs_failed_at",
    func.coalesce(StepRun.finished_at, StepRun.attempt_started_at),
    postgresql_where=text("status IN ('FAILED', 'RETRY_WAIT', 'TIMED_OUT')"),
)
Index("ix_workflow_runs_kind_admitted", WorkflowRun.kind, WorkflowRun.admitted_at)
