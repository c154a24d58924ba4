"""Checking a spec's agents and actions against the built-ins and the registered agents, where
a spec enters: registration of a definition (API, Kubernetes, built-ins) and inline specs of
`POST /coordinate`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.agent_registry import agent_catalog
from shared.errors import ValidationFailed
from shared.spec.models import WorkflowSpec
from shared.spec.validation import SpecError, check_agents


async def check_spec_agents(session: AsyncSession, spec: WorkflowSpec, *, prefix: str = "") -> None:
    """422 naming the field (`<prefix>steps[i].agent`, `.action`) for an unknown agent/action."""
    catalog = await agent_catalog(session, {step.agent for step in spec.steps})
    try:
        check_agents(spec, catalog)
    except SpecError as exc:
        field = f"{prefix}{exc.field}"
        raise ValidationFailed(
            f"{field}: {exc.reason}",
            details=[{"field": field, "message": exc.reason, "type": "value_error"}],
        ) from exc
