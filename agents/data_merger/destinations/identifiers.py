"""What the destinations share: SQL names (PostgreSQL, DuckDB) and the rules every one applies."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.base.actions import AgentError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# The merger's own bookkeeping in each target schema; no dataset may take its name.
LOADS_TABLE = "_merger_loads"


def quote(identifier: str) -> str:
    """A checked, double-quoted SQL identifier."""
    if not IDENTIFIER.match(identifier):
        raise AgentError(
            f"invalid SQL identifier {identifier!r}: letters, digits and '_' only",
            code="invalid_target",
        )
    return f'"{identifier}"'


def refuse_strategy_mismatch(label: str, table_is_scd2: bool, load_is_scd2: bool) -> None:
    """An scd2 table takes only scd2 merges, and any other table no scd2 merge (every
    destination: the validity columns mean history there, and only scd2 keeps them true)."""
    if table_is_scd2 == load_is_scd2:
        return
    kind = "an scd2 table" if table_is_scd2 else "not an scd2 table"
    raise AgentError(
        f"{label} is {kind}; it takes "
        + ("only merges with strategy scd2" if table_is_scd2 else "no scd2 merge"),
        code="strategy_mismatch",
    )


@dataclass
class LoadCounts:
    """What a database load did to its table's rows (scd2: `deleted` counts closed versions)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    written: int = 0
