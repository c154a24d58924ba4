"""Registered workflow definitions: (name, version) is immutable once stored.

A definition is archived, never deleted: runs keep referring to the version they ran, so an
archived version stays readable but is hidden from listings and takes no new runs. This
follows Airflow's DAG deactivation (`is_active`: off the list and the scheduler, its runs kept)
and Temporal's deprecated namespaces (no new executions, existing ones unaffected), rather
than Prefect's deployment DELETE, which removes the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.agents.catalog import check_spec_agents
from services.orchestrator_controller.definitions.schemas import DefinitionOut, DefinitionSummary
from shared.db.models import Schedule, WorkflowDefinition
from shared.errors import AppError, Conflict, NotFound
from shared.spec.models import WorkflowSpec

log = logging.getLogger(__name__)
# A summary shows this much of a description (the spec has all of it): a listing stays small.
DESCRIPTION_CHARS = 500


class SpecTooLarge(AppError):
    status_code = 413
    code = "spec_too_large"


def spec_hash(spec: WorkflowSpec) -> str:
    """A fingerprint of a spec's content."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_spec_size(spec: WorkflowSpec, *, limit: int, field: str = "spec") -> None:
    """413 unless the spec, as it would be stored (compact JSON, UTF-8), fits in `limit` bytes.

    Every listing and every run of a definition carries its spec, so one huge spec would make
    each of them as large; the check runs before anything is stored.
    """
    # pydantic's own serializer: a third of json.dumps(model_dump()) on the /coordinate path.
    size = len(spec.model_dump_json().encode())
    if size > limit:
        raise SpecTooLarge(
            f"{field}: {size} bytes as stored (compact JSON, UTF-8), over the limit of {limit} "
            "bytes (CONTROLLER_MAX_SPEC_BYTES)",
            details={"field": field, "size_bytes": size, "limit_bytes": limit},
        )


def _archived_error(name: str, version: int | None, archived_at: datetime | None) -> Conflict:
    shown = f"workflow {name!r}" + (f" version {version}" if version is not None else "")
    when = f" since {archived_at.isoformat()}" if archived_at is not None else ""
    return Conflict(
        f"{shown} is archived{when}; it takes no new runs (register a new version to use it)",
        code="definition_archived",
        details={"workflow": name, "version": version},
    )


async def register(
    session: AsyncSession, *, spec: WorkflowSpec, source: str = "api", replace: bool = False
) -> tuple[WorkflowDefinition, bool]:
    """Store a definition; return it and whether it was new.

    The same content again is accepted (idempotent); other content under an existing
    (name, version) is a conflict unless `replace` (used for built-in and Kubernetes sources).
    An archived version is refused (409) unless `replace`, which keeps it archived: a restart
    must not bring back a built-in an operator archived. Steps must name a built-in or
    registered agent and one of its actions (422 naming the field).
    """
    await check_spec_agents(session, spec)
    digest = spec_hash(spec)
    inserted = await session.execute(
        text(
            "INSERT INTO workflow_definitions (name, version, kind, spec, spec_hash, source) "
            "VALUES (:name, :version, :kind, CAST(:spec AS jsonb), :hash, :source) "
            "ON CONFLICT DO NOTHING RETURNING name"
        ),
        {
            "name": spec.name,
            "version": spec.version,
            "kind": spec.kind,
            "spec": json.dumps(spec.model_dump(mode="json")),
            "hash": digest,
            "source": source,
        },
    )
    is_new = inserted.first() is not None
    existing = (
        await session.execute(
            select(WorkflowDefinition)
            .where(WorkflowDefinition.name == spec.name, WorkflowDefinition.version == spec.version)
            .with_for_update()
        )
    ).scalar_one()
    if existing.archived_at is not None and not replace:
        raise _archived_error(spec.name, spec.version, existing.archived_at)
    if existing.spec_hash != digest:
        if not replace:
            raise Conflict(
                f"workflow {spec.name!r} version {spec.version} exists with other content; "
                "register it under a new version",
                code="definition_exists",
            )
        log.info("replacing %s v%s from %s", spec.name, spec.version, source)
        existing.spec = spec.model_dump(mode="json")
        existing.spec_hash = digest
        existing.kind = spec.kind
        existing.source = source
        await session.flush()
    return existing, is_new


async def resolve(
    session: AsyncSession, *, name: str, version: int | None, lock: bool = False
) -> WorkflowSpec:
    """The spec of a registered, unarchived workflow (the newest such version when none given).

    404 when no such definition exists, 409 `definition_archived` when it (or, without a
    version, every version) is archived. `lock` holds the row (FOR SHARE) to the end of the
    transaction, so a schedule created with it cannot race an archive of that version.
    """
    query = select(WorkflowDefinition).where(WorkflowDefinition.name == name)
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    # the newest unarchived version first; an archived one only when nothing else is there
    query = query.order_by(
        WorkflowDefinition.archived_at.is_(None).desc(), WorkflowDefinition.version.desc()
    ).limit(1)
    if lock:
        query = query.with_for_update(read=True)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        shown = f"{name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"no registered workflow {shown}", code="unknown_workflow")
    if found.archived_at is not None:
        raise _archived_error(name, version, found.archived_at if version is not None else None)
    return WorkflowSpec.model_validate(found.spec)


def _summary_columns(include_spec: bool) -> list[Any]:
    columns: list[Any] = [
        WorkflowDefinition.name,
        WorkflowDefinition.version,
        WorkflowDefinition.kind,
        WorkflowDefinition.source,
        func.left(
            func.coalesce(WorkflowDefinition.spec["description"].astext, ""), DESCRIPTION_CHARS
        ).label("description"),
        cast(func.jsonb_array_length(WorkflowDefinition.spec["steps"]), Integer).label("steps"),
        WorkflowDefinition.created_at,
        WorkflowDefinition.archived_at,
    ]
    if include_spec:
        columns.append(WorkflowDefinition.spec)
    return columns


def _summary(row: Any, include_spec: bool) -> DefinitionSummary:
    return DefinitionSummary(
        name=row.name,
        version=row.version,
        kind=row.kind,
        source=row.source,
        description=row.description,
        steps=row.steps,
        created_at=row.created_at,
        archived=row.archived_at is not None,
        archived_at=row.archived_at,
        spec=row.spec if include_spec else None,
    )


def summarize(definition: WorkflowDefinition) -> DefinitionSummary:
    """A stored definition as listed, without its spec."""
    spec = definition.spec
    return DefinitionSummary(
        name=definition.name,
        version=definition.version,
        kind=definition.kind,
        source=definition.source,
        description=str(spec.get("description") or "")[:DESCRIPTION_CHARS],
        steps=len(spec.get("steps") or []),
        created_at=definition.created_at,
        archived=definition.archived_at is not None,
        archived_at=definition.archived_at,
    )


def describe(definition: WorkflowDefinition) -> DefinitionOut:
    """A stored definition with its spec."""
    return DefinitionOut(**summarize(definition).model_dump(exclude={"spec"}), spec=definition.spec)


async def list_definitions(
    session: AsyncSession,
    *,
    name: str | None,
    include_archived: bool = False,
    include_spec: bool = False,
) -> list[DefinitionSummary]:
    """Definitions (all versions), newest first per name; the spec only when asked for.

    Only the summary columns are read unless `include_spec`: a listing stays small however
    large the specs are.
    """
    query = select(*_summary_columns(include_spec)).order_by(
        WorkflowDefinition.name, WorkflowDefinition.version.desc()
    )
    if name:
        query = query.where(WorkflowDefinition.name == name)
    if not include_archived:
        query = query.where(WorkflowDefinition.archived_at.is_(None))
    return [_summary(row, include_spec) for row in await session.execute(query)]


async def _lock_versions(
    session: AsyncSession, *, name: str, version: int | None
) -> list[WorkflowDefinition]:
    """Every version of `name` (all, or the one asked for), locked; 404 when there is none."""
    query = select(WorkflowDefinition).where(WorkflowDefinition.name == name)
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    rows = list(
        (
            await session.execute(
                query.order_by(WorkflowDefinition.version.desc()).with_for_update()
            )
        ).scalars()
    )
    if not rows:
        shown = f"{name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"no registered workflow {shown}", code="unknown_workflow")
    return rows


async def archive(
    session: AsyncSession, *, name: str, version: int | None
) -> list[WorkflowDefinition]:
    """Archive one version of a workflow, or every version; return the versions concerned.

    Archiving again changes nothing (DELETE is idempotent). 409 `definition_in_use`, naming
    them, while an enabled schedule would fire a version being archived: one pinned to it, or
    one following the newest version when that is the one being archived.
    """
    rows = await _lock_versions(session, name=name, version=version)
    fresh = [row for row in rows if row.archived_at is None]
    if not fresh:
        return rows
    newest_active = (
        await session.execute(
            select(func.max(WorkflowDefinition.version)).where(
                WorkflowDefinition.name == name, WorkflowDefinition.archived_at.is_(None)
            )
        )
    ).scalar_one()
    versions = [row.version for row in fresh]
    fires_it: ColumnElement[bool] = Schedule.workflow_version.in_(versions)
    if newest_active in versions:
        fires_it = fires_it | Schedule.workflow_version.is_(None)
    users = await session.execute(
        select(Schedule.name)
        .where(Schedule.workflow_name == name, Schedule.enabled, fires_it)
        .order_by(Schedule.name)
    )
    in_use = list(users.scalars())
    if in_use:
        shown = f"workflow {name!r}" + (f" version {version}" if version is not None else "")
        raise Conflict(
            f"{shown} is used by enabled schedules: {', '.join(in_use)}; disable or delete "
            "them first",
            code="definition_in_use",
            details={"workflow": name, "version": version, "schedules": in_use},
        )
    now = datetime.now(UTC)
    for row in fresh:
        row.archived_at = now
    await session.flush()
    log.info("archived workflow %s versions %s", name, versions)
    return rows


async def restore(
    session: AsyncSession, *, name: str, version: int | None
) -> list[WorkflowDefinition]:
    """Take one version of a workflow, or every version, out of the archive."""
    rows = await _lock_versions(session, name=name, version=version)
    for row in rows:
        row.archived_at = None
    await session.flush()
    return rows
