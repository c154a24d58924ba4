"""The platform's own retry history: each recorded retry decision and what the next attempt got.

The engine writes, into a failed attempt's `step_runs.attempt_log` entry, the decision it took
(`decision`: retry, delay, the failure's features and the decider's version). A decision
followed by another attempt is one labelled sample: did a call `delay_s` later succeed?
The newest `HELD_OUT_SHARE` of the samples (by when their step finished) are held out from
training, a time slice on which the model's predicted success chances are scored.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ml.retry_strategy.policy import FailureContext

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_QUERY = """
SELECT run_id, attempt_log,
       extract(epoch FROM coalesce(finished_at, started_at, now()))::float8 AS at
FROM step_runs
WHERE attempts > 1 AND attempt_log @> '[{"outcome": "failed"}]'::jsonb
ORDER BY at DESC LIMIT 50000
"""
HELD_OUT_SHARE = 0.2
MIN_HELD_OUT = 20  # fewer held-out samples than this say nothing: all go to training


@dataclass
class HistorySamples:
    failures: list[FailureContext] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    succeeded: list[bool] = field(default_factory=list)
    at: list[float] = field(default_factory=list)  # when the sample's step finished (epoch s)
    runs: int = 0
    problem: str | None = None

    def split(self) -> tuple[HistorySamples, HistorySamples]:
        """(older samples to train on, the newest HELD_OUT_SHARE held out), or all to train
        when the held-out slice would be smaller than MIN_HELD_OUT."""
        held = int(len(self.at) * HELD_OUT_SHARE)
        if held < MIN_HELD_OUT:
            return self, HistorySamples(runs=0)
        order = sorted(range(len(self.at)), key=self.at.__getitem__)
        return self._subset(order[:-held]), self._subset(order[-held:])

    def _subset(self, indexes: list[int]) -> HistorySamples:
        return HistorySamples(
            failures=[self.failures[i] for i in indexes],
            delays=[self.delays[i] for i in indexes],
            succeeded=[self.succeeded[i] for i in indexes],
            at=[self.at[i] for i in indexes],
            runs=self.runs,
        )


def samples_from_logs(rows: list[tuple[Any, ...]]) -> HistorySamples:
    """Samples from (run_id, attempt_log[, finished at]) rows: a logged decision and the next
    attempt."""
    found = HistorySamples()
    runs = set()
    for run_id, raw, *when in rows:
        log = json.loads(raw) if isinstance(raw, str) else raw
        for entry, following in zip(log, log[1:], strict=False):
            decision = (entry or {}).get("decision") or {}
            features = decision.get("failure")
            if not decision.get("retry") or not isinstance(features, dict):
                continue
            known = {k: v for k, v in features.items() if k in FailureContext.__dataclass_fields__}
            found.failures.append(FailureContext(**known))
            found.delays.append(float(decision.get("delay_s", 0.0)))
            found.succeeded.append(following.get("outcome") == "succeeded")
            found.at.append(float(when[0]) if when else 0.0)
            runs.add(run_id)
    found.runs = len(runs)
    return found


async def _read(database_url: str, schema: str) -> list[tuple[Any, ...]]:
    import asyncpg

    from shared.db.session import asyncpg_dsn

    conn = await asyncpg.connect(
        asyncpg_dsn(database_url), server_settings={"search_path": schema}, timeout=10
    )
    try:
        return [(r["run_id"], r["attempt_log"], r["at"]) for r in await conn.fetch(_QUERY)]
    finally:
        await conn.close()


def training_samples(database_url: str | None, db_schema: str | None) -> HistorySamples:
    """The retry decisions recorded in the platform database; empty without one."""
    if not database_url:
        return HistorySamples()
    schema = db_schema or "ingestion_platform"
    if not _SCHEMA.match(schema):
        raise ValueError(f"db_schema {schema!r} is not a schema name")
    try:
        rows = asyncio.run(_read(database_url, schema))
    except Exception as exc:  # no history is not a reason to fail training: say so instead
        return HistorySamples(problem=f"{type(exc).__name__}: {exc}"[:300])
    return samples_from_logs(rows)
