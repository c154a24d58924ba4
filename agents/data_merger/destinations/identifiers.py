"""SQL names the database destinations (PostgreSQL, DuckDB) share."""

from __future__ import annotations

import re

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
