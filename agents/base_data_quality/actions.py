"""base-data-quality actions: `check` files' data quality (the data-merger's `quality_check`
over files) and `classify` their columns' personal data (the data-converter's `classify`), the
same bodies, results and code (agents.base.quality)."""

from __future__ import annotations

import threading
from typing import Any

from agents.base.actions import ActionRegistry
from agents.base.context import ActionContext
from agents.base.quality.actions import (
    ClassifyBody,
    FileChecksBody,
    QualityResult,
    check_files,
    classify,
)

registry = ActionRegistry("base-data-quality")

# A classification reads a sample of each file in a thread; bounding how many run bounds memory.
CONCURRENT_CLASSIFICATIONS = threading.BoundedSemaphore(2)

_CONVERTED = "/data/runs/adhoc/convert/0000-orders-2026-01-15.parquet"


@registry.action(
    "check",
    FileChecksBody,
    example={
        "files": [_CONVERTED],
        "checks": {
            "row_count_min": 1,
            "not_null": ["order_id", "email"],
            "unique": ["order_id"],
            "ranges": {"amount": {"min": 0, "max": 10000}},
        },
    },
    description="check files' data quality",
    read_only=True,
)
async def check_action(body: FileChecksBody, ctx: ActionContext) -> QualityResult:
    """Run the checks over the files, as the data-merger's `quality_check` does over files.

    Returns `{"passed": true, "rows", "results": [{"check", "column"?, "passed", "observed",
    "expected"}]}`; when a check fails, the action fails with the non-retryable error
    `quality_failed` whose details carry the same results. A merged dataset is checked by the
    data-merger (`quality_check` with `dataset`), which owns its layout.
    """
    return await check_files(body.files, body, ctx)


@registry.action(
    "classify",
    ClassifyBody,
    example={"files": [_CONVERTED], "sample_rows": 1000},
    description="find columns holding personal data",
    read_only=True,
)
async def classify_action(body: ClassifyBody, ctx: ActionContext) -> dict[str, Any]:
    """Classify every column of the files by a sample of their content.

    Returns `{"columns": [{"column", "pii", "category", "confidence", "evidence"}],
    "pii_columns", "sample_rows", "thresholds"}`, as the data-converter's `classify` does.
    """
    return await classify(body, ctx, slots=CONCURRENT_CLASSIFICATIONS)
