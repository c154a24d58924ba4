"""`pagination: auto` / `records_path: auto`: resolved from the first page through the decider.

The collector fetches its first page as usual; before reading records from it, the source
detection (the registry's champion, or the rules when there is none) looks at that page and
says how the API pages and where the records are. The rest of the collect follows that answer,
and the answer, with the decider's provenance, is part of the collect's output.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx

from agents.base.actions import AgentError
from agents.base.context import ActionContext
from agents.base.sources.models import HttpSource
from agents.data_collector.rest import Pagination
from ml.source_detection.body import HEAD_BYTES
from ml.source_detection.collect import collector_pagination, collector_records_path

MODEL = "source_detection"
AUTO = "auto"


class FirstPageDetection:
    """The first-page hook of `collect_rest`: detect, then hand back pagination and path."""

    def __init__(
        self, source: HttpSource, ctx: ActionContext, *, pagination: bool, records_path: bool
    ) -> None:
        self.ctx = ctx
        self.auto_pagination = pagination
        self.auto_records = records_path
        query = urlencode({k: str(v) for k, v in source.params.items()})
        # The configured URL and its non-secret parameters: auth never reaches the model.
        self.url = (
            f"{source.url}{'&' if '?' in source.url else '?'}{query}" if query else source.url
        )
        self.report: dict[str, Any] | None = None

    async def __call__(
        self,
        response: httpx.Response,
        payload: Any,
        pagination: Pagination,
        records_path: str | None,
    ) -> tuple[Pagination, str | None]:
        """Pagination and records path for the collect, from the first page."""
        decider = self.ctx.models[MODEL].current
        # The raw bytes were consumed decoding the page; its re-encoding keeps key order.
        head = json.dumps(payload).encode()[:HEAD_BYTES]
        found = decider.predictor.detect(
            self.url, response.status_code, dict(response.headers), head
        )
        if self.auto_pagination:
            mapped, why = collector_pagination(found)
            if mapped is None:
                raise AgentError(f"pagination: auto: {why}", code="pagination_undetected")
            pagination = Pagination.model_validate(mapped)
        if self.auto_records:
            records_path = collector_records_path(found)
        self.report = {
            "pagination": pagination.model_dump() if self.auto_pagination else AUTO_NOT_USED,
            "records_path": records_path if self.auto_records else AUTO_NOT_USED,
            "detection": found.as_dict(),
            "decided_by": decider.provenance(),
        }
        return pagination, records_path


AUTO_NOT_USED = "given"  # the field was given explicitly, not resolved


def first_page_hook(
    source: HttpSource, ctx: ActionContext, pagination: Any, records_path: str | None
) -> FirstPageDetection | None:
    """The hook when pagination or records_path is `auto`, else None."""
    auto_pagination, auto_records = pagination == AUTO, records_path == AUTO
    if not (auto_pagination or auto_records):
        return None
    return FirstPageDetection(source, ctx, pagination=auto_pagination, records_path=auto_records)
