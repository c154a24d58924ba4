"""The bodies and handlers two agents serve alike: the quality checks over files (the
data-merger's `quality_check`, base-data-quality's `check`) and PII classification (the
data-converter's and base-data-quality's `classify`)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import polars as pl
from fastapi.encoders import jsonable_encoder
from pydantic import Field

from agents.base.actions import ActionBody, ActionResult, AgentError
from agents.base.completeness import Completeness
from agents.base.context import ActionContext
from agents.base.frames import open_files
from agents.base.quality.checks import Checks, collected_checks, run_checks
from agents.base.quality.pii import classify_report
from agents.base.storage import DataRoot
from agents.base.tabular.inputs import FileRefs, resolve_input, scratch_dir


class QualityFields(ActionBody):
    """What every quality check body carries besides the data it checks."""

    checks: Checks = Field(description="the checks; every one must pass")
    collected: Completeness | None = Field(
        None,
        description="the counts of the collect these files came from (its `announced`, `read`, "
        "`outcome`...), for the announced_matches check",
    )


class FileChecksBody(QualityFields):
    files: FileRefs = Field(
        description="files to check: URIs, manifests, step outputs or nested lists of these, "
        "each under DATA_ROOT or an allowed root"
    )


class QualityResult(ActionResult):
    """Checks that all passed: a failing one fails the action with `quality_failed` instead."""

    passed: bool
    rows: int = Field(description="rows checked")
    results: list[dict[str, Any]] = Field(
        description="one per check: `check`, `column`?, `passed`, `observed`, `expected`"
    )


def check_locations(
    root: DataRoot, locations: list[str], checks: Checks
) -> tuple[int, list[dict[str, Any]]]:
    """The row count and the result of each data check over readable locations (blocking)."""
    with scratch_dir(root) as work:
        frame = open_files(locations, work)
        try:
            return run_checks(frame, checks)
        except pl.exceptions.PolarsError as exc:
            # Files are scanned lazily: a corrupt one, or a bound its column's type cannot
            # hold, shows only now. Either is the request's, and would fail again.
            raise AgentError(f"cannot check the files: {exc}", code="parse_error") from exc


def verdict(rows: int, results: list[dict[str, Any]], body: QualityFields) -> QualityResult:
    """The data checks' results with the collect's: a result when all pass, else the
    non-retryable `quality_failed` naming each failed check, its details the same results."""
    encoded: list[dict[str, Any]] = jsonable_encoder(
        [*results, *collected_checks(body.checks, body.collected)]
    )
    failed = [
        r["check"] + (f" {r['column']}" if "column" in r else "")
        for r in encoded
        if not r["passed"]
    ]
    if failed:
        raise AgentError(
            f"quality checks failed: {', '.join(failed)}",
            code="quality_failed",
            details={"rows": rows, "results": encoded},
        )
    return QualityResult(passed=True, rows=rows, results=encoded)


async def check_files(files: list[str], body: QualityFields, ctx: ActionContext) -> QualityResult:
    """Run the body's checks over `files` (references a body names, confined to the roots)."""
    root = DataRoot.from_setting(ctx.settings.data_root)
    locations = [await asyncio.to_thread(resolve_input, ref, ctx.settings) for ref in files]
    rows, results = await asyncio.to_thread(check_locations, root, locations, body.checks)
    return verdict(rows, results, body)


class ClassifyBody(ActionBody):
    files: FileRefs = Field(
        min_length=1,
        description="files to examine: URIs, manifests, step outputs or nested lists of these",
    )
    sample_rows: int = Field(
        1000, ge=1, le=100_000, description="rows read from the head of each file"
    )


def _bounded(slots: threading.BoundedSemaphore, function: Any, /, *args: Any, **kw: Any) -> Any:
    with slots:
        return function(*args, **kw)


async def classify(
    body: ClassifyBody, ctx: ActionContext, *, slots: threading.BoundedSemaphore
) -> dict[str, Any]:
    """Classify every column of the files by a sample of their content, holding one of `slots`
    while the files are read (agents.base.quality.pii)."""
    root = DataRoot.from_setting(ctx.settings.data_root)
    files = [(ref, await asyncio.to_thread(resolve_input, ref, ctx.settings)) for ref in body.files]
    report: dict[str, Any] = await asyncio.to_thread(
        _bounded, slots, classify_report, files, root=root, sample_rows=body.sample_rows
    )
    return report
