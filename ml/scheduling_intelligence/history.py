"""The platform's own collect history as samples: rows per succeeded collect, per source.

A source is the collect's `state_key` (the cursor it commits under), else its workflow. Each
collect k gives a sample: the features of the collects up to k and, as target, the rows of
collect k+1 relative to what the long-run rate predicts for its interval. The newest
`HELD_OUT_SHARE` of each source's samples are held out (a time slice), for the report.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
from dataclasses import dataclass, field

from ml.scheduling_intelligence.policy import HISTORY_LIMIT, MIN_HISTORY, features, long_run_rate

log = logging.getLogger(__name__)
HELD_OUT_SHARE = 0.3

_QUERY = """
SELECT coalesce(st.output->>'state_key', r.workflow_name) AS source,
       extract(epoch FROM coalesce(st.started_at, st.finished_at)) AS at,
       (st.output->>'count')::bigint AS rows
FROM "{schema}".step_runs st JOIN "{schema}".workflow_runs r ON r.id = st.run_id
WHERE st.agent = 'data-collector' AND st.action = 'collect' AND st.status = 'SUCCEEDED'
  AND jsonb_typeof(st.output->'count') = 'number'
  AND coalesce(st.started_at, st.finished_at) IS NOT NULL
ORDER BY 1, 2
"""


@dataclass
class Samples:
    xs: list[list[float]] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    ws: list[float] = field(default_factory=list)
    # for baselines on the held-out slice: the history columns and budget of each sample
    contexts: list[tuple[list[float], list[int], float]] = field(default_factory=list)


@dataclass
class HistorySamples:
    train: Samples = field(default_factory=Samples)
    held_out: Samples = field(default_factory=Samples)
    sources: int = 0
    collects: int = 0
    problem: str | None = None  # why there is no history (no database, unreachable, empty)


async def _fetch(database_url: str, schema: str) -> list[tuple[str, float, int]]:
    import asyncpg

    from shared.db.session import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(_QUERY.format(schema=schema))
    finally:
        await conn.close()
    return [(str(r["source"]), float(r["at"]), int(r["rows"])) for r in rows]


def _source_samples(at: list[float], rows: list[int], out: HistorySamples) -> None:
    gaps = [b - a for a, b in zip(at, at[1:], strict=False) if b > a]
    if len(gaps) < MIN_HISTORY + 2:
        return
    budget = statistics.median(gaps)
    indices = range(MIN_HISTORY - 1, len(at) - 1)
    cut = indices.start + int(len(indices) * (1 - HELD_OUT_SHARE))
    for k in indices:
        lo = max(0, k + 1 - HISTORY_LIMIT)
        tail_at, tail_rows = at[lo : k + 1], rows[lo : k + 1]
        interval = at[k + 1] - at[k]
        if interval <= 0 or tail_at[-1] <= tail_at[0]:
            continue
        expected = long_run_rate(tail_at, tail_rows) * interval
        part = out.train if k < cut else out.held_out
        part.xs.append(features(tail_at, tail_rows, budget))
        part.ys.append(rows[k + 1] / expected)
        part.ws.append(expected)
        part.contexts.append((tail_at, tail_rows, budget))


def training_samples(database_url: str | None, db_schema: str | None) -> HistorySamples:
    """Samples from the platform's succeeded collects; empty (with the reason) without any."""
    if database_url is None:
        return HistorySamples(problem="no database given")
    schema = db_schema or "ingestion_platform"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
        raise ValueError(f"not a schema name: {schema!r}")
    try:
        found = asyncio.run(_fetch(database_url, schema))
    except Exception as exc:  # unreachable, or not migrated: the simulator alone still trains
        log.warning("collect history unavailable: %s", exc)
        return HistorySamples(problem=f"database unavailable ({type(exc).__name__})")
    out = HistorySamples(collects=len(found))
    by_source: dict[str, tuple[list[float], list[int]]] = {}
    for source, at, rows in found:
        columns = by_source.setdefault(source, ([], []))
        columns[0].append(at)
        columns[1].append(rows)
    for times, counts in by_source.values():
        before = len(out.train.xs) + len(out.held_out.xs)
        _source_samples(times, counts, out)
        out.sources += len(out.train.xs) + len(out.held_out.xs) > before
    if not out.train.xs:
        out.problem = f"no usable collect history ({len(found)} collects)"
    return out
