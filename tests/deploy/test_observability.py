"""Dashboards and alerts as files: promtool on the rules, the Grafana SDK on the dashboards,
the chart's PrometheusRule and dashboard ConfigMaps, and their wiring in docker-compose.yml.

tests/e2e/test_observability.py evaluates the same queries against a live platform.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from grafana_foundation_sdk.builders import prometheus as prometheus_sdk
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy.grafana.build import DASHBOARDS, DASHBOARDS_DIR, build, rendered

from .conftest import CHART, render
from .observability import MISSING_PROMETHEUS, ROOT, RULES, RULES_TEST, alert_rules
from .test_compose import compose

ENABLED = {
    "metrics": {
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboards": {"enabled": True, "annotations": {"grafana_folder": "Ingestion"}},
    }
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(MISSING_PROMETHEUS)
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def _encoded(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=JSONEncoder))


# ------------------------------------------------------------------------------- alert rules


def test_promtool_checks_the_rules_and_the_compose_config() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
    config = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_alert(tmp_path: Path) -> None:
    broken = RULES.read_text().replace("agent_health_status) == 0", "agent_health_status) == 1")
    (tmp_path / "rules.yml").write_text(broken)
    shutil.copy(RULES_TEST, tmp_path / "rules.test.yml")
    result = promtool("test", "rules", str(tmp_path / "rules.test.yml"))
    assert result.returncode != 0 and "IngestionAgentDown" in result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test_and_a_runbook() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case.get("exp_alerts")
    }
    readme = (ROOT / "README.md").read_text().splitlines()
    for rule in alert_rules():
        name = rule["alert"]
        assert name in fired and name in quiet, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["runbook"] == f"README.md#{name.lower()}", name
        assert f"#### {name}" in readme, f"README.md has no runbook heading for {name}"


# -------------------------------------------------------------------------------- dashboards


def test_written_dashboards_and_chart_copies_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in rendered().items()
        if not path.is_file() or path.read_text() != text
    ]
    assert not stale, f"run `python -m deploy.grafana.build`: {stale}"
    assert sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")) == sorted(
        f"{d.uid}.json" for d in DASHBOARDS
    )


@pytest.mark.parametrize("spec", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_json_is_grafanas_model(spec: Any) -> None:
    """Parsed by the SDK's model of Grafana's dashboard schema and encoded again, nothing is
    lost or changed: no field the schema does not know, every target a Prometheus query."""
    board = json.loads((DASHBOARDS_DIR / f"{spec.uid}.json").read_text())
    assert _encoded(Dashboard.from_json(board)) == board
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert {p["type"] for p in panels} <= {"timeseries", "stat"}
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            again = prometheus_sdk.Dataquery().expr(target["expr"]).ref_id(target["refId"])
            if "legendFormat" in target:
                again.legend_format(target["legendFormat"])
            if target.get("instant"):
                again.instant()
            assert _encoded(again.build()) == target
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert board == build(spec)


def test_the_workflow_dashboard_is_per_workflow() -> None:
    (workflow,) = [d for d in DASHBOARDS if d.workflow_variable]
    board = json.loads((DASHBOARDS_DIR / f"{workflow.uid}.json").read_text())
    variable = next(v for v in board["templating"]["list"] if v["name"] == "workflow")
    assert variable["query"] == "label_values(workflows_executed_total, type)"
    for panel, query in workflow.queries():
        assert '{type=~"$workflow"' in query.expr, panel.title


def test_the_overview_covers_what_operators_look_at() -> None:
    exprs = " ".join(q.expr for board in DASHBOARDS for _, q in board.queries())
    for metric in (
        "workflow_runs_started_total",
        "workflows_executed_total",
        "workflow_execution_duration_seconds_bucket",
        "workflow_queue_size",
        "active_workflows",
        "admission_waiting_runs",
        "events_relay_lag_seconds",
        "agent_health_status",
        "agent_actions_total",
        "agent_action_errors_total",
        "api_host_paused",
        "api_host_admissions_in_window",
        "dataset_rows",
        "dataset_bytes",
        "dataset_load_duration_seconds_bucket",
    ):
        assert metric in exprs, metric


# ------------------------------------------------------------------------------------ chart


def test_chart_ships_neither_rules_nor_dashboards_by_default(
    default_manifests: list[dict[str, Any]], production_manifests: list[dict[str, Any]]
) -> None:
    for manifests in (default_manifests, production_manifests):
        assert not [m for m in manifests if m["kind"] == "PrometheusRule"]
        assert not [m for m in manifests if "grafana_dashboard" in m["metadata"]["labels"]]


def test_prometheus_rule_holds_the_rules_file(chart: helm_python.Chart) -> None:
    (rule,) = [m for m in render(chart, ENABLED) if m["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Prometheus's own templates reach the rule untouched by Helm's.
    annotations = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    assert "{{ $labels.type }}" in annotations["summary"]


def test_dashboard_configmaps_carry_the_sidecar_label(chart: helm_python.Chart) -> None:
    maps = [m for m in render(chart, ENABLED) if m["kind"] == "ConfigMap"]
    dashboards = [m for m in maps if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == len(DASHBOARDS)
    for configmap in dashboards:
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Ingestion"}
        ((name, text),) = configmap["data"].items()
        assert json.loads(text) == json.loads((DASHBOARDS_DIR / name).read_text())
    custom = {
        "metrics": {"grafanaDashboards": {"enabled": True, "label": "dash", "labelValue": "x"}}
    }
    labels = [m["metadata"]["labels"] for m in render(chart, custom) if m["kind"] == "ConfigMap"]
    assert sum(1 for label in labels if label.get("dash") == "x") == len(DASHBOARDS)


def test_chart_with_rules_and_dashboards_passes_strict_lint() -> None:
    report = helm_python.lint(CHART, ENABLED, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems or report["errors"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"metrics": {"prometheusRule": {"enabled": "yes"}}}, "/metrics/prometheusRule/enabled"),
        ({"metrics": {"grafanaDashboards": {"enabled": "auto"}}}, "grafanaDashboards/enabled"),
        ({"metrics": {"grafanaDashboards": {"label": "not a label"}}}, "grafanaDashboards/label"),
        ({"metrics": {"prometheusRule": {"extra": 1}}}, "extra"),
    ],
)
def test_wrong_observability_values_fail_at_install_time(
    chart: helm_python.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as info:
        render(chart, values)
    assert complaint in str(info.value)


# ---------------------------------------------------------------------------------- compose


def test_compose_wires_prometheus_and_grafana(tmp_path: Path) -> None:
    for name in ("docker-compose.yml", ".env.example", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = compose(tmp_path, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    mounts = {
        name: {v["target"]: v["source"] for v in services[name]["volumes"]}
        for name in ("prometheus", "grafana")
    }
    assert mounts["prometheus"]["/etc/prometheus"] == str(tmp_path / "deploy" / "prometheus")
    assert mounts["grafana"]["/etc/grafana/dashboards"] == str(
        tmp_path / DASHBOARDS_DIR.relative_to(ROOT)
    )
    assert mounts["grafana"]["/etc/grafana/provisioning"] == str(
        tmp_path / "deploy" / "grafana" / "provisioning"
    )
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # The data source is the compose Prometheus; the dashboards' folder is what is mounted.
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "ingestion-platform.yml").read_text()
    )["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    # Prometheus scrapes every platform service of the compose file, on its port.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    for name, service in services.items():
        if name in ("prometheus", "grafana") or "PORT" not in service.get("environment", {}):
            continue
        assert f"{name}:{service['environment']['PORT']}" in targets, name
