"""The feature_engineering workflow end to end: files collected, converted, transformed by the
data-transformer's DuckDB query, and the query's result merged, checked against the source."""

from __future__ import annotations

import csv
import uuid
from collections import defaultdict

from tests.e2e.conftest import Platform
from tests.e2e.test_workflows import dataset_rows, run_workflow, step


def test_feature_engineering_merges_what_the_query_derives(platform: Platform) -> None:
    root = platform.data_root / "sources" / f"features_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    totals: dict[str, list[float]] = defaultdict(list)
    for part in range(3):
        with (root / f"orders_{part}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["order_id", "customer", "amount"])
            for i in range(20):
                customer, amount = f"c{(i + part) % 7}", round(1.25 * i + part, 2)
                writer.writerow([part * 100 + i, customer, amount])
                totals[customer].append(amount)
    sql = (
        "SELECT customer, count(*) AS orders, round(sum(amount), 2) AS total, "
        "max(amount) AS largest FROM batch GROUP BY customer"
    )
    run = run_workflow(
        platform,
        "feature_engineering",
        {
            "root": str(root),
            "sql": sql,
            "dataset": f"features_{root.name}",
            "primary_key": ["customer"],
        },
    )
    assert run["status"] == "SUCCEEDED", run
    assert [s["step_id"] for s in run["steps"]] == ["collect", "convert", "transform", "merge"]
    transformed = step(run, "transform")["output"]
    assert transformed["inputs"] == {"batch": {"files": 3, "rows": 60}}
    assert transformed["rows"] == len(totals)
    # Staged under this run's folder, as every step stages its output.
    assert f"/runs/{run['run_id']}/transform/" in transformed["uri"]
    rows = dataset_rows(step(run, "merge")["output"], "customer")
    assert [(r["customer"], r["orders"], r["total"], r["largest"]) for r in rows] == [
        (name, len(amounts), round(sum(amounts), 2), max(amounts))
        for name, amounts in sorted(totals.items())
    ]
