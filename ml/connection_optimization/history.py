"""The platform's own history of collects, as simulator twins of the sources it talked to.

Every paginated collect records its probe, its plan and where its limiter ended (`output.pacing`,
see agents/data_collector/pacing.py). A recorded collect becomes a twin source: the probe's
latency is its service time, the limiter's final concurrency its capacity when the source
pushed back (and a generous one when it never did), the final rate its rate limit when it
refused requests. Twins join the training sources (the older 80 %) and the held-out sources
(the newest 20 %), so a platform that talks to slow, strict APIs learns to plan for them.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from dataclasses import dataclass
from typing import Any

from ml.sim.capacity import SourceSpec

PLATFORM_SCHEMA = "ingestion_platform"

_QUERY = """
SELECT s.output -> 'pacing' AS pacing, s.attempt_log, s.finished_at
FROM {schema}.step_runs s
WHERE s.agent = 'data-collector' AND s.action = 'collect' AND s.status = 'SUCCEEDED'
ORDER BY s.finished_at
"""


@dataclass(frozen=True)
class History:
    """What the database held: twins in time order, and the collects' call latencies."""

    twins: list[SourceSpec]
    collects: int
    call_ms_p50: float | None


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def twin(pacing: dict[str, Any], index: int) -> SourceSpec | None:
    """The simulated source a recorded collect suggests, or None when it measured too little."""
    probe, limiter = pacing.get("probe") or {}, pacing.get("limiter") or {}
    latency = probe.get("latency_p50_s")
    if not latency:
        return None
    pushed_back = bool(limiter.get("rejected") or probe.get("rejected"))
    rate = limiter.get("rate_per_s") if pushed_back else None
    capacity = int(limiter.get("limit") or 1) if pushed_back else 32
    page = int(probe.get("records_per_page") or 100)
    return SourceSpec(
        family="history",
        seed=10_000 + index,
        capacity=max(1, capacity),
        queue=2,
        base_s=float(latency) * 0.8,
        per_record_s=float(latency) * 0.2 / max(page, 1),
        noise=0.3,
        max_page_size=max(page, 100),
        rate_per_s=float(rate) if rate else probe.get("rate_hint_per_s"),
        retry_after=probe.get("retry_after_s") is not None,
        advertises_rate=probe.get("rate_hint_per_s") is not None,
        records=5_000,
    )


async def _rows(database_url: str, schema: str) -> list[Any]:
    import asyncpg

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"not a schema name: {schema!r}")
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(_QUERY.format(schema=schema)))
    finally:
        await conn.close()


def load_history(database_url: str, schema: str | None) -> History:
    """The recorded collects of the platform database (empty on a fresh install)."""
    rows = asyncio.run(_rows(database_url, schema or PLATFORM_SCHEMA))
    twins: list[SourceSpec] = []
    durations: list[float] = []
    for row in rows:
        for entry in _decode(row["attempt_log"]) or []:
            if isinstance(entry, dict) and entry.get("duration_ms") is not None:
                durations.append(float(entry["duration_ms"]))
        pacing = _decode(row["pacing"])
        if isinstance(pacing, dict) and (found := twin(pacing, len(twins))) is not None:
            twins.append(found)
    p50 = statistics.median(durations) if durations else None
    return History(twins, len(rows), p50)
