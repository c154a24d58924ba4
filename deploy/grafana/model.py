"""What a dashboard is made of: panels of PromQL queries, each saying whether it must have data.

`data` is checked by tests/e2e/test_observability.py: after the built-in `test` workflow ran
twice, a real Prometheus scraping the platform must return samples for every query marked so.
Replicas of the controller report the same gauges (read from PostgreSQL): those queries take
`max`; counters are per process, so those queries `sum`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RATE = "$__rate_interval"
FAILED = 'status=~"FAILED|COMPENSATED|COMPENSATION_FAILED"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    # Must return samples after the `test` workflow ran twice (tests/e2e/test_observability.py).
    data: bool = True


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    workflow_variable: bool = False
    tags: tuple[str, ...] = field(default=("ingestion-platform",))

    def queries(self) -> list[tuple[Panel, Query]]:
        """Every panel's queries, in order."""
        return [(p, q) for row in self.rows for p in row.panels for q in p.queries]


def quantiles(metric: str, by: str = "", selector: str = "") -> tuple[Query, ...]:
    """p50, p95 and p99 of a histogram, per `by` labels."""
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by.split(",")[0].strip() + "}} " if by else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )
