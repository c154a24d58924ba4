"""Registered workflow definitions: (name, version) is immutable once stored."""

from __future__ import annotations

import hashlib
import json
import logging

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.models import WorkflowDefinition
from shared.errors import Conflict, NotFound
from shared.spec.models import WorkflowSpec

log = logging.getLogger(__name__)


def spec_hash(spec: WorkflowSpec) -> str:
    """A fingerprint of a spec's content."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def register(
    session: AsyncSession, *, spec: WorkflowSpec, source: str = "api", replace: bool = False
) -> tuple[WorkflowDefinition, bool]:
    """Store a definition; return it and whether it was new.

    The same content again is accepted (idempotent); other content under an existing
    (name, version) is a conflict unless `replace` (used for built-in and Kubernetes sources).
    """
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


async def resolve(session: AsyncSession, *, name: str, version: int | None) -> WorkflowSpec:
    """The spec of a registered workflow (the newest version when none is given)."""
    query = select(WorkflowDefinition).where(WorkflowDefinition.name == name)
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    found = (
        await session.execute(query.order_by(WorkflowDefinition.version.desc()).limit(1))
    ).scalar_one_or_none()
    if found is None:
        shown = f"{name!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"no registered workflow {shown}", code="unknown_workflow")
    return WorkflowSpec.model_validate(found.spec)


async def list_definitions(session: AsyncSession, *, name: str | None) -> list[WorkflowDefinition]:
    """Every definition (all versions), newest first per name."""
    query = select(WorkflowDefinition).order_by(
        WorkflowDefinition.name, WorkflowDefinition.version.desc()
    )
    if name:
        query = query.where(WorkflowDefinition.name == name)
    return list((await session.execute(query)).scalars())
