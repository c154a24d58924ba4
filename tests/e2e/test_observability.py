"""The dashboards and alerts against a real Prometheus scraping the running platform.

Debian's Prometheus (`.ci/run` installs it) is started on a free port with a generated config
that scrapes the controller, the engine and every agent each second and loads
deploy/prometheus/rules.yml. The built-in `test` workflow runs twice into one dataset (the
second time with one more order, so the merge really writes); then every panel's query of
deploy/grafana/ and every alert expression is evaluated through /api/v1/query. A
syntax error fails, and so does an empty (or all-NaN) result for a query marked `data`.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.grafana.build import DASHBOARDS
from deploy.grafana.render import render
from deploy.grafana.runs import OVERVIEW
from launcher.processes import ROOT, free_port
from shared.metrics import create_agent_metrics, create_metrics
from tests.conftest import SERVICE_TOKEN
from tests.deploy.observability import MISSING_PROMETHEUS, RULES, alert_rules
from tests.e2e.conftest import Platform
from tests.e2e.test_workflows import run_workflow

# What Grafana puts in for its variables; the windows cover both runs of the test.
VARIABLES = {"$__rate_interval": "2m", "$__range": "5m", "$workflow": "test"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
PROMQL_WORDS |= {"unless", "offset", "bool", "inf", "nan", "le", "instance", "job"}
# Aggregations may take their `by (...)` before the parenthesis.
PROMQL_WORDS |= {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "quantile"}
PROMQL_WORDS |= {"topk", "bottomk", "count_values"}


@pytest.fixture(scope="module")
def prometheus(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping the platform every second, with the alert rules loaded."""
    binary = shutil.which("prometheus")
    if binary is None or shutil.which("promtool") is None:
        pytest.fail(MISSING_PROMETHEUS)
    work = tmp_path_factory.mktemp("prometheus")
    targets = {
        "controller": [platform.ports.controller],
        "engine": [platform.ports.engine],
        "agents": list(platform.ports.agents.values()),
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
            }
            for job, ports in targets.items()
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _get(f"{url}/-/ready") == 200, "Prometheus ready", work)
        expected = sum(len(p) for p in targets.values())
        _until(lambda: _targets_up(url) == expected, f"{expected} targets up", work)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _targets_up(url: str) -> int:
    targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return sum(1 for t in targets if t["health"] == "up")


def _until(check: Callable[[], bool], what: str, logs: Path | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    detail = (logs / "prometheus.log").read_text()[-2000:] if logs else ""
    raise TimeoutError(f"{what}: not after 20 s\n{detail}")


def query(url: str, expr: str) -> dict[str, Any]:
    """Prometheus's answer to an instant query (status, data or error)."""
    answer: dict[str, Any] = httpx.get(
        f"{url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    return answer


def _values(answer: dict[str, Any]) -> list[float]:
    data = answer["data"]
    if data["resultType"] in ("scalar", "string"):
        return [float(data["result"][1])]
    return [float(sample["value"][1]) for sample in data["result"]]


def _value(url: str, expr: str) -> float:
    return sum(v for v in _values(query(url, expr)) if not math.isnan(v))


def _run_test_workflow_twice(platform: Platform, url: str) -> str:
    """Two runs of `test` into one dataset; waits until Prometheus has scraped both."""
    source = platform.data_root / f"obs_{uuid.uuid4().hex[:6]}"
    source.mkdir()
    for csv in (ROOT / "samples" / "test").glob("*.csv"):
        shutil.copy(csv, source / csv.name)
    dataset = f"obs_{uuid.uuid4().hex[:8]}"
    inputs = {
        "source_dir": str(source),
        "remote_url": platform.samples_url("remote/orders_api.json"),
        "dataset": dataset,
    }
    # Each run must be seen by a scrape of its own (a scrape may fail on a loaded machine), so
    # that rates over the window have a before and an after for every panel to show.
    counters = (
        'sum(workflow_runs_started_total{type="test"})',
        'sum(workflows_executed_total{type="test", status="SUCCEEDED"})',
        f'sum(dataset_rows_written_total{{dataset="{dataset}"}})',
    )
    for run in (1, 2):
        floors = {c: _value(url, c) for c in counters}
        assert run_workflow(platform, "test", inputs)["status"] == "SUCCEEDED"
        _until(partial(_all_above, url, floors), f"Prometheus has run {run} of `test`")
        if run == 1:  # one more order: a new batch, so the second merge writes again
            with (source / "orders_2026_11_a.csv").open("a") as orders:
                orders.write("1001,Ada,ada1001@example.com,12.50,2026-11-30T00:00:00Z\n")
    return dataset


def _all_above(url: str, floors: dict[str, float]) -> bool:
    return all(_value(url, expr) > floor for expr, floor in floors.items())


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def _exposed_names(platform: Platform) -> set[str]:
    """Metric names the running services expose (their # TYPE lines), with sample suffixes."""
    urls = [platform.controller, platform.engine.url, *platform.ports.agent_urls().values()]
    names: set[str] = set()
    for base in urls:
        for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                names.add(name)
                if kind == "histogram":
                    names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _declared_labels() -> set[str]:
    registries = [create_metrics().registry, create_agent_metrics("x").registry]
    return {
        label
        for registry in registries
        for collector in registry._collector_to_names  # prometheus_client keeps no public list
        for label in getattr(collector, "_labelnames", ())
    }


def _unknown_names(expr: str, exposed: set[str], labels: set[str]) -> set[str]:
    """Identifiers of `expr` that are neither a PromQL word, a function, a label nor exposed."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    unbracketed = re.sub(r"\[[^\]]*\]", "[]", unquoted)
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", unbracketed))
    return words - PROMQL_WORDS - labels - exposed


@pytest.fixture(scope="module")
def dataset(platform: Platform, prometheus: str) -> str:
    """The dataset of two runs of `test`, both scraped: what the panels must show."""
    return _run_test_workflow_twice(platform, prometheus)


def test_every_panel_and_alert_query_runs_on_the_live_platform(
    platform: Platform, prometheus: str, dataset: str
) -> None:
    exposed, labels = _exposed_names(platform), _declared_labels()
    checked = 0
    failures: list[str] = []
    for board in DASHBOARDS:
        for panel, q in board.queries():
            expr = _substitute(q.expr)
            where = f"{board.uid} / {panel.title}: {expr}"
            checked += 1
            if unknown := _unknown_names(expr, exposed, labels):
                failures.append(f"{where}: no service exposes {sorted(unknown)}")
            answer = query(prometheus, expr)
            if answer["status"] != "success":
                failures.append(f"{where}: {answer.get('errorType')}: {answer.get('error')}")
                continue
            values = [v for v in _values(answer) if not math.isnan(v)]
            if q.data and not values:
                failures.append(f"{where}: no data after two runs of `test`")
    for rule in alert_rules():
        checked += 1
        where = f"alert {rule['alert']}: {rule['expr']}"
        if unknown := _unknown_names(rule["expr"], exposed, labels):
            failures.append(f"{where}: no service exposes {sorted(unknown)}")
        answer = query(prometheus, rule["expr"])
        if answer["status"] != "success":
            failures.append(f"{where}: {answer.get('errorType')}: {answer.get('error')}")
    assert not failures, f"{len(failures)} of {checked} queries failed:\n" + "\n".join(failures)
    # The dataset panels show this run's dataset, not only older ones.
    assert _value(prometheus, f'max(dataset_rows{{dataset="{dataset}"}})') == 141
    assert _value(prometheus, f'max(dataset_bytes{{dataset="{dataset}"}})') > 0


def test_the_overview_drawn_from_live_data_has_every_panel_filled(
    prometheus: str, dataset: str, tmp_path: Path
) -> None:
    """The README's picture of the overview: drawn from this Prometheus's range data (no Grafana
    installs here), every panel whose queries must have data drawing at least one series."""
    shot = tmp_path / "overview-dashboard.png"
    end = time.time()
    counts = render(OVERVIEW, prometheus, shot, start=end - 120, end=end, variables=VARIABLES)
    must_draw = {p.title for p, q in OVERVIEW.queries() if q.data}
    assert not [title for title in must_draw if counts[title] == 0], counts
    assert shot.stat().st_size > 20_000  # a picture, not an empty canvas
    (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ROOT / "docs" / "screenshots" / "overview-dashboard.png")


def test_errors_by_code_panel_shows_a_refused_call(platform: Platform, prometheus: str) -> None:
    scheduler = platform.ports.agent_urls()["data-scheduler"]
    refused = httpx.post(
        f"{scheduler}/api/v1/next_runs",
        json={"cron": "every now and then", "timezone": "UTC", "count": 1},
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        timeout=10,
    )
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_cron"
    (panel,) = [p for b in DASHBOARDS for p, _ in b.queries() if p.title == "Errors by code"]
    expr = _substitute(panel.queries[0].expr).replace("rate(", "increase(")
    wanted = f'{expr} and on (agent, code) agent_action_errors_total{{code="invalid_cron"}}'
    _until(lambda: bool(_values(query(prometheus, wanted))), "the invalid_cron error scraped")


def test_prometheus_evaluates_every_alert_rule_without_error(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        # A rule never evaluated yet has the zero time as its last evaluation.
        return [r for g in groups for r in g["rules"] if not r["lastEvaluation"].startswith("0001")]

    expected = {rule["alert"] for rule in alert_rules()}
    _until(lambda: {r["name"] for r in evaluated()} == expected, "every rule evaluated")
    broken = {r["name"]: r.get("lastError") for r in evaluated() if r["health"] != "ok"}
    assert not broken, broken


def test_promtool_accepts_every_services_metrics(platform: Platform) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(MISSING_PROMETHEUS)
    urls = {"controller": platform.controller, "engine": platform.engine.url}
    urls |= platform.ports.agent_urls()
    for name, base in urls.items():
        text = httpx.get(f"{base}/metrics", timeout=5).text
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
