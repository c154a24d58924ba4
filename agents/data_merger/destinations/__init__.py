"""Where a merge writes: one module per destination kind, each with the same entry point.

Every destination module offers `load(request: LoadRequest, options) -> dict` (blocking; the
action runs it in a thread; PostgreSQL's is async) and honours the same contract:

- **All or nothing.** The load is one atomic commit in the destination (a Delta version, a
  database transaction): a crash before it leaves the destination as it was.
- **Exactly once.** The batch's `fingerprint` is stored in the same commit (Delta commit
  metadata, a `_merger_loads` ledger table in the database), and a load whose fingerprint is
  already there writes nothing and returns the stored result with `replayed: true`.
- **The same result shape**: `dataset`, `target` (the kind), where it went (`uri`, `table` or
  `path`), `version` (the destination's version after the load, when it has versions),
  `rows` (rows in the table after the load; for scd2 every version row), `inserted`,
  `updated`, `unchanged`, `deleted` (scd2: versions closed), `written` (rows this load wrote),
  `bytes` (bytes it wrote, when known), `schema` (column -> type, `schema_names`),
  `primary_key`, `write_disposition`, `strategy`, `contract` (the `ContractReport`),
  `replayed`.
- **Costs what changed**: a merge rewrites only what holds the changed keys, never the whole
  table, and loads with nothing to change write nothing (`written: 0`, same version).
- **Schema**: the contract (`contracts.apply_contract`) is applied against the table's current
  schema before anything is written; new nullable columns are added; a type change is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from agents.data_merger.contracts import SchemaContract
from agents.data_merger.merging import MergeSpec


@dataclass(frozen=True)
class LoadRequest:
    """One batch to apply to one destination table."""

    dataset: str
    # Deduplicated batch rows (one per key when there is a key), hard_delete rows removed.
    batch: pl.LazyFrame
    # Keys whose rows the batch deletes (upsert) or retires (scd2): the hard_delete rows.
    deletes: pl.LazyFrame | None
    spec: MergeSpec
    fingerprint: str
    contract: SchemaContract = field(default_factory=SchemaContract)
    run_id: str | None = None
    step_id: str | None = None
    # The load's time: scd2 validity bounds, commit metadata.
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    workdir: str = "/tmp"
