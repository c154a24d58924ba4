"""The engine's autoscaling: the chart's HPA or a KEDA ScaledObject, and the adapter rule behind
the HPA's External metric.

The ScaledObject is checked against KEDA's CRD through cloudcoil-models-keda (PyPI): pydantic
models that cloudcoil generates from the openAPIV3Schema of KEDA's ScaledObject CRD (KEDA 2.16).
Generated models ignore keys the schema does not know, so the check also demands that the
round trip through the model keeps every key and value.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pydantic
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from .conftest import CHART, NAMESPACE, production_values, render
from .observability import MISSING_PROMETHEUS, ROOT
from .test_helm_chart import by_component, of_kind

ADAPTER_VALUES = ROOT / "deploy" / "prometheus" / "prometheus-adapter-values.yaml"
KEDA_ON: dict[str, Any] = {
    "engine": {
        "autoscaling": {
            "keda": {
                "enabled": True,
                "serverAddress": "http://prometheus.monitoring.svc:9090",
                "threshold": 12.5,
                "pollingInterval": 15,
            }
        }
    }
}


def differences(given: Any, kept: Any, path: str = "") -> list[str]:
    """Where kept (the object after the model's round trip) lost or changed what given had."""
    if isinstance(given, dict) and isinstance(kept, dict):
        problems = []
        for key, value in given.items():
            if key not in kept:
                problems.append(f"{path}.{key}: not in the schema")
            else:
                problems += differences(value, kept[key], f"{path}.{key}")
        return problems
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            p
            for i, (g, k) in enumerate(zip(given, kept, strict=True))
            for p in differences(g, k, f"{path}[{i}]")
        ]
    return [] if given == kept else [f"{path}: {given!r} became {kept!r}"]


def keda_schema_problems(manifest: dict[str, Any]) -> list[str]:
    """Why KEDA's ScaledObject schema refuses manifest; empty when it is valid."""
    obj = {k: v for k, v in manifest.items() if k != "__template__"}
    try:
        parsed = ScaledObject.model_validate(obj, strict=True)
    except pydantic.ValidationError as exc:
        return [str(exc)]
    return differences(obj, parsed.model_dump(by_alias=True, exclude_unset=True))


def only_scaled_object(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (scaled,) = of_kind(manifests, "ScaledObject")
    return scaled


def trigger(scaled: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [t for t in scaled["spec"]["triggers"] if t["type"] == kind]
    return found


@pytest.fixture(scope="module")
def keda_manifests(chart: helm_python.Chart) -> list[dict[str, Any]]:
    return render(chart, KEDA_ON)


@pytest.fixture(scope="module")
def production_keda_manifests(chart: helm_python.Chart) -> list[dict[str, Any]]:
    values = production_values()
    values["engine"]["autoscaling"]["keda"] = KEDA_ON["engine"]["autoscaling"]["keda"]
    return render(chart, values)


def adapter_rule(metric: str) -> dict[str, Any]:
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    (rule,) = [r for r in values["rules"]["external"] if r["name"]["as"] == metric]
    return dict(rule)


# ---------------------------------------------------------------------------- KEDA off and on


def test_keda_is_off_by_default_and_the_chart_renders_the_hpa(
    default_manifests: list[dict[str, Any]], production_manifests: list[dict[str, Any]]
) -> None:
    for manifests in (default_manifests, production_manifests):
        assert not of_kind(manifests, "ScaledObject")
        assert len(of_kind(manifests, "HorizontalPodAutoscaler")) == 1


def test_keda_on_renders_a_scaled_object_instead_of_the_hpa(
    default_manifests: list[dict[str, Any]], keda_manifests: list[dict[str, Any]]
) -> None:
    # KEDA creates its own HPA for the target; a second one would fight it.
    assert not of_kind(keda_manifests, "HorizontalPodAutoscaler")
    scaled = only_scaled_object(keda_manifests)
    engine = by_component(keda_manifests, "Deployment")["workflow-engine"]
    assert "replicas" not in engine["spec"], "KEDA owns the replica count"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": engine["metadata"]["name"],
    }
    (hpa,) = of_kind(default_manifests, "HorizontalPodAutoscaler")
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
    )
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["spec"]["behavior"]
    assert spec["pollingInterval"] == 15
    cpu = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert trigger(scaled, "cpu")["metadata"] == {"value": str(cpu)}
    queue = trigger(scaled, "prometheus")
    assert queue["metricType"] == "AverageValue"
    assert queue["metadata"]["serverAddress"] == "http://prometheus.monitoring.svc:9090"
    assert queue["metadata"]["threshold"] == "12.5"
    service = by_component(keda_manifests, "Service")["workflow-engine"]["metadata"]["name"]
    assert queue["metadata"]["query"] == (
        f'max(workflow_queue_size{{namespace="{NAMESPACE}",service="{service}"}})'
    )


@pytest.mark.parametrize("values", ["default", "production"])
def test_the_scaled_object_is_valid_against_kedas_crd(
    keda_manifests: list[dict[str, Any]],
    production_keda_manifests: list[dict[str, Any]],
    values: str,
) -> None:
    manifests = keda_manifests if values == "default" else production_keda_manifests
    assert keda_schema_problems(only_scaled_object(manifests)) == []


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        (lambda s: s["spec"].pop("scaleTargetRef"), "scaleTargetRef"),
        (lambda s: s["spec"]["triggers"][1]["metadata"].update(threshold=50), "threshold"),
        (lambda s: s["spec"].update(minReplicas=2), ".spec.minReplicas: not in the schema"),
        (lambda s: s["spec"].update(pollingInterval="30"), "pollingInterval"),
    ],
    ids=["no target", "numeric threshold", "HPA field name", "string interval"],
)
def test_the_keda_schema_check_refuses_broken_scaled_objects(
    keda_manifests: list[dict[str, Any]], break_it: Any, complaint: str
) -> None:
    broken = json.loads(json.dumps(only_scaled_object(keda_manifests)))
    break_it(broken)
    problems = keda_schema_problems(broken)
    assert problems and complaint in "\n".join(problems)


def test_helm_lint_strict_passes_with_keda_on() -> None:
    report = helm_python.lint(CHART, KEDA_ON, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems or report["errors"]


@pytest.mark.parametrize(
    ("keda", "complaint"),
    [
        ({"serverAddress": "prometheus:9090"}, "/engine/autoscaling/keda/serverAddress"),
        ({"threshold": 0}, "/engine/autoscaling/keda/threshold"),
        ({"pollingInterval": 0}, "/engine/autoscaling/keda/pollingInterval"),
        ({"enabled": "yes"}, "/engine/autoscaling/keda/enabled"),
        ({"query": "up"}, "query"),
    ],
)
def test_wrong_keda_values_fail_at_install_time(
    chart: helm_python.Chart, keda: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as info:
        render(chart, {"engine": {"autoscaling": {"keda": keda}}})
    assert complaint in str(info.value)


def test_keda_without_autoscaling_fails_with_a_message(chart: helm_python.Chart) -> None:
    values = {"engine": {"autoscaling": {"enabled": False, "keda": {"enabled": True}}}}
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(chart, values)
    assert "engine.autoscaling.keda.enabled needs engine.autoscaling.enabled" in str(info.value)


# ---------------------------------------------------------------------------- prometheus-adapter


def adapter_query(rule: dict[str, Any], metric: str, matchers: dict[str, str]) -> str:
    """The query prometheus-adapter runs for an External metric request with these labels."""
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(matchers.items()))
    query: str = rule["metricsQuery"]
    return query.replace("<<.Series>>", metric).replace("<<.LabelMatchers>>", labels)


def test_the_adapter_rule_serves_what_the_hpa_asks_for(
    production_manifests: list[dict[str, Any]],
    production_keda_manifests: list[dict[str, Any]],
) -> None:
    (hpa,) = of_kind(production_manifests, "HorizontalPodAutoscaler")
    (external,) = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    metric = external["metric"]["name"]
    selector = external["metric"]["selector"]["matchLabels"]
    rule = adapter_rule(metric)
    assert re.fullmatch(rule["name"]["matches"], metric)
    # The rule discovers series of that name that carry every label the HPA selects on.
    series = re.fullmatch(r"(\w+)\{(.*)\}", rule["seriesQuery"])
    assert series and series.group(1) == metric, rule["seriesQuery"]
    for label in [*selector, "namespace"]:
        assert f'{label}!=""' in series.group(2), label
    # A namespaced metric: the adapter adds the HPA's namespace as a label matcher.
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    # The adapter's query and KEDA's are one query, so the two scalers agree.
    asked = adapter_query(rule, metric, {**selector, "namespace": NAMESPACE})
    keda = trigger(only_scaled_object(production_keda_manifests), "prometheus")
    assert asked == keda["metadata"]["query"]


def test_the_queue_query_takes_the_engines_shared_queue_once(
    production_keda_manifests: list[dict[str, Any]], tmp_path: Path
) -> None:
    """promtool evaluates the query: the maximum over the engine's pods, nothing else."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(MISSING_PROMETHEUS)
    query = trigger(only_scaled_object(production_keda_manifests), "prometheus")["metadata"]
    engine = by_component(production_keda_manifests, "Service")["workflow-engine"]
    service = engine["metadata"]["name"]
    series = [
        (NAMESPACE, service, "engine-a", 7),
        (NAMESPACE, service, "engine-b", 7),
        # The controller exports the same name with the runs waiting for admission added.
        (NAMESPACE, service.replace("workflow-engine", "controller"), "controller-a", 12),
        ("other", service, "engine-c", 30),
    ]
    case = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": (
                            f'workflow_queue_size{{namespace="{ns}",service="{svc}",pod="{pod}"}}'
                        ),
                        "values": f"{value}x2",
                    }
                    for ns, svc, pod, value in series
                ],
                "promql_expr_test": [
                    {
                        "expr": query["query"],
                        "eval_time": "1m",
                        "exp_samples": [{"labels": "{}", "value": 7}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "queue.test.yml").write_text(yaml.safe_dump(case))
    result = subprocess.run(
        [binary, "test", "rules", "queue.test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
