"""Building the OpenLineage RunEvent of one run lifecycle event, from the platform's tables.

Inputs are the sources of the run's source steps, their params rendered as the engine renders
them (the run's inputs and its succeeded steps' outputs; rendered params are not stored). A
START lists every source known from the run's inputs alone; an end lists the sources of the
steps that were called. Outputs are the run's `dataset_loads` records, one dataset per
destination with the rows and bytes the run wrote (`outputStatistics`), the columns of the last
load's stored result (`schema`, no destination is read) and the version it left (`version`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    processing_engine_run,
    schema_dataset,
)
from sqlalchemy import select
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.lineage.naming import (
    DatasetName,
    load_dataset,
    source_datasets,
)
from shared.db.models import DatasetLoad, StepRun, WorkflowRun
from shared.spec.models import StepSpec, WorkflowSpec
from shared.spec.templates import TemplateContext, TemplateError, render
from shared.state.machine import RUN_EVENT, RunStatus

log = logging.getLogger(__name__)

PLATFORM_VERSION = version("ingestion-platform")
PRODUCER = f"urn:ingestion-platform:orchestrator-controller:{PLATFORM_VERSION}"
# A compensated run failed (its effects were undone); it ends with FAIL like a failed one.
RUN_STATES = {
    RUN_EVENT[RunStatus.RUNNING]: RunState.START,
    RUN_EVENT[RunStatus.SUCCEEDED]: RunState.COMPLETE,
    RUN_EVENT[RunStatus.FAILED]: RunState.FAIL,
    RUN_EVENT[RunStatus.CANCELLED]: RunState.ABORT,
    RUN_EVENT[RunStatus.COMPENSATED]: RunState.FAIL,
    RUN_EVENT[RunStatus.COMPENSATION_FAILED]: RunState.FAIL,
}
LIFECYCLE_STREAMS = tuple(sorted(RUN_STATES))


@dataclass(frozen=True)
class LineageNames:
    """What names the events: the job namespace, and the database PostgreSQL merges write."""

    namespace: str
    target_database_url: str


async def build_event(
    session: AsyncSession, event: Mapping[str, Any], names: LineageNames
) -> RunEvent | None:
    """The RunEvent for a platform event, or None when it has none (another type, a run gone)."""
    state = RUN_STATES.get(str(event.get("type")))
    if state is None or not event.get("run_id"):
        return None
    run_id = uuid.UUID(str(event["run_id"]))
    run = await session.get(WorkflowRun, run_id)
    if run is None:
        return None
    steps = (
        await session.scalars(
            select(StepRun).where(StepRun.run_id == run_id, StepRun.role == "action")
        )
    ).all()
    outputs: list[OutputDataset] = []
    if state is not RunState.START:
        loads = await session.scalars(
            select(DatasetLoad).where(DatasetLoad.run_id == str(run_id)).order_by(DatasetLoad.id)
        )
        outputs = list(_outputs(loads.all(), names.target_database_url))
    return RunEvent(
        eventType=state,
        eventTime=str(event.get("time") or datetime.now(UTC).isoformat()),
        run=Run(runId=str(run_id), facets=_run_facets(run, state)),
        job=Job(namespace=names.namespace, name=run.workflow_name, facets=_job_facets()),
        inputs=[
            InputDataset(namespace=n.namespace, name=n.name)
            for n in _inputs(run, steps, called_only=state is not RunState.START)
        ],
        outputs=outputs,
        producer=PRODUCER,
    )


def _run_facets(run: WorkflowRun, state: RunState) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=PLATFORM_VERSION,
            name="ingestion-platform",
            openlineageAdapterVersion=version("openlineage-python"),
            producer=PRODUCER,
        )
    }
    if state is RunState.FAIL:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=run.error or run.status_reason or f"run ended {run.status}",
            programmingLanguage="python",
            producer=PRODUCER,
        )
    return facets


def _job_facets() -> dict[str, Any]:
    # Each run is a bounded batch, a stream workflow's too (it collects a bounded count).
    return {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration="INGESTION_PLATFORM",
            jobType="WORKFLOW",
            producer=PRODUCER,
        )
    }


def _inputs(run: WorkflowRun, steps: Sequence[StepRun], *, called_only: bool) -> list[DatasetName]:
    spec = WorkflowSpec.model_validate(run.spec)
    # A START says what was known when the run started, however late it is built: no outputs.
    outputs = {
        s.step_id: s.output
        for s in steps
        if called_only and s.map_index < 0 and s.status == "SUCCEEDED"
    }
    called: dict[str, list[int]] = {}
    for row in steps:
        if row.attempts > 0:
            called.setdefault(row.step_id, []).append(row.map_index)
    found: dict[DatasetName, None] = {}  # ordered and without repeats
    for step in spec.steps:
        if called_only and step.id not in called:
            continue
        context = TemplateContext(inputs=run.inputs, step_outputs=outputs, run_id=str(run.id))
        for params in _rendered(step, context, called.get(step.id) if called_only else None):
            try:
                found.update(dict.fromkeys(source_datasets(step.agent, step.action, params)))
            except (ArgumentError, ValueError) as exc:  # a URL no name can be made of
                log.warning(
                    "lineage: no dataset name for step %s of run %s: %s", step.id, run.id, exc
                )
    return list(found)


def _rendered(step: StepSpec, context: TemplateContext, indexes: list[int] | None) -> Iterator[Any]:
    """The step's params as the engine rendered them (each map item's, for a map_over step)."""
    try:
        if step.map_over is None:
            yield render(step.params, context)
            return
        items = render(step.map_over, context)
        if not isinstance(items, list):
            return
        for index in range(len(items)) if indexes is None else [i for i in indexes if i >= 0]:
            if index < len(items):
                context.item, context.has_item = items[index], True
                yield render(step.params, context)
    except TemplateError:
        return  # refers to an output the run does not have (yet): nothing known to read


def _outputs(loads: Sequence[DatasetLoad], target_database_url: str) -> Iterator[OutputDataset]:
    by_destination: dict[tuple[str, str], list[DatasetLoad]] = {}
    for load in loads:
        by_destination.setdefault((load.kind, load.destination), []).append(load)
    for (kind, destination), group in by_destination.items():
        last = group[-1]
        try:
            name = load_dataset(
                kind, destination, last.result, target_database_url=target_database_url
            )
        except (ArgumentError, ValueError) as exc:
            log.warning("lineage: no dataset name for destination %s: %s", destination, exc)
            continue
        sizes = [load.bytes_written for load in group]
        facets: dict[str, Any] = {}
        if schema := _schema_facet(last.result.get("schema")):
            facets["schema"] = schema
        if last.destination_version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(last.destination_version), producer=PRODUCER
            )
        statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=sum(load.rows_written for load in group),
            size=None if None in sizes else sum(s or 0 for s in sizes),
            producer=PRODUCER,
        )
        yield OutputDataset(
            namespace=name.namespace,
            name=name.name,
            facets=facets,
            outputFacets={"outputStatistics": statistics},
        )


def _schema_facet(columns: Any) -> schema_dataset.SchemaDatasetFacet | None:
    """The columns a load result lists as `{name: type}` (None when it lists none)."""
    if not isinstance(columns, Mapping) or not columns:
        return None
    # Sorted by name, without ordinal positions: JSONB keeps no key order, so the stored
    # result no longer says the table's column order.
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=str(column), type=str(type_name))
        for column, type_name in sorted(columns.items())
    ]
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)
