"""The five CRDs: real structural schemas that accept the examples and refuse bad resources."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import helm_python
import pytest
import yaml

from services.orchestrator_controller.kubernetes import (
    API_VERSION,
    GROUP,
    PLURAL,
    VERSION,
    spec_to_resource,
)
from services.orchestrator_controller.live import resource as config_resource
from services.orchestrator_controller.live.settings import LiveSettings
from services.orchestrator_controller.policies.config import OrchestratorsConfig
from services.orchestrator_controller.policies.resource import (
    MANAGER_OF_TYPE,
    all_resource_fields,
    example_yaml,
    resource_fields,
    spec_overrides,
    spec_properties,
)
from shared.settings import AGENT_NAMES
from shared.spec.catalog import AGENT_ACTIONS
from shared.spec.models import (
    STEP_ID_PATTERN,
    CompensateSpec,
    InputSpec,
    RetryPolicy,
    StepSpec,
    WorkflowKind,
    WorkflowSpec,
)

from .conftest import CHART, ROOT
from .crd_schema import CrdValidator, schema_at, structural_problems

EXAMPLES = CHART / "examples"
KINDS = {"Model", "Agent", "Config", "Orchestrator", "Workflow"}
MODELS = {
    "connection_optimization",
    "format_recognition",
    "retry_strategy",
    "scheduling_intelligence",
    "source_detection",
}


def load_crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


CRDS = load_crds()


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for i, document in enumerate(yaml.safe_load_all(path.read_text())):
            documents.append((f"{path.relative_to(EXAMPLES)}#{i}", document))
    return documents


@pytest.fixture(scope="module")
def validators() -> Iterator[dict[str, CrdValidator]]:
    built = {kind: CrdValidator(crd) for kind, crd in CRDS.items()}
    yield built
    for validator in built.values():
        validator.close()


def test_the_chart_ships_the_five_crds() -> None:
    with helm_python.Chart.load(CHART) as chart:
        shipped = {yaml.safe_load(c["data"])["spec"]["names"]["kind"] for c in chart.crds}
    assert shipped == KINDS == set(CRDS)
    for kind, crd in CRDS.items():
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
        assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
        (version,) = spec["versions"]
        assert version["name"] == VERSION and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}, kind
        assert "spec" in version["schema"]["openAPIV3Schema"]["required"]
        assert (
            "conditions"
            in version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schemas_are_structural(kind: str) -> None:
    assert structural_problems(schema_of(kind)) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_printer_columns_point_into_the_schema(kind: str) -> None:
    columns = CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert len(columns) >= 3
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        node = schema_at(schema_of(kind), column["jsonPath"])
        assert node is not None, column
        assert node["type"] == column["type"], column


@pytest.mark.parametrize(
    ("where", "document"), example_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_examples_are_valid_resources(
    validators: dict[str, CrdValidator], where: str, document: dict[str, Any]
) -> None:
    assert document["apiVersion"] == API_VERSION, where
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", document["metadata"]["name"]), where
    assert validators[document["kind"]].errors(document) is None


def test_examples_cover_the_six_workflows_and_the_five_models() -> None:
    documents = [d for _, d in example_documents()]
    kinds = {d["spec"]["definition"]["kind"] for d in documents if d["kind"] == "Workflow"}
    assert kinds == set(get_args(WorkflowKind))
    assert {d["spec"]["model"] for d in documents if d["kind"] == "Model"} == MODELS
    agents = [d["spec"] for d in documents if d["kind"] == "Agent"]
    # The built-ins' records (no baseUrl), and an external agent registered by its URL.
    assert {a["agentName"] for a in agents if "baseUrl" not in a} == set(AGENT_NAMES)
    assert any("baseUrl" in a and a["agentName"] not in AGENT_NAMES for a in agents)
    assert {d["spec"]["type"] for d in documents if d["kind"] == "Orchestrator"} == {
        "api",
        "batch",
        "file",
        "ingestion",
        "stream",
    }
    assert [d for d in documents if d["kind"] == "Config"]


def standard() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "workflows" / "standard.yaml").read_text())


def broken(path: str, value: Any) -> dict[str, Any]:
    """The standard workflow with one field replaced (value None deletes it)."""
    resource = standard()
    *parents, last = path.split(".")
    node: Any = resource
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return resource


@pytest.mark.parametrize(
    ("resource", "complaint"),
    [
        (broken("spec.definition", None), "definition"),
        (broken("spec.definition.steps", []), "steps"),
        (broken("spec.definition.kind", "bespoke"), "kind"),
        (broken("spec.definition.steps.0.agent", "data-teleporter"), "agent"),
        (broken("spec.definition.steps.0.id", "Check"), "id"),
        (broken("spec.definition.steps.0.action", None), "action"),
        (broken("spec.definition.steps.1.retry.max_attempts", 0), "max_attempts"),
        (broken("spec.definition.steps.1.retry.jitter", 2), "jitter"),
        (broken("spec.definition.steps.0.timeout_s", 0), "timeout_s"),
        (broken("spec.definition.version", 0), "version"),
        (broken("spec.definition.inputs.url.type", "uuid"), "type"),
        (broken("spec.definition.name", "Standard Flow"), "name"),
    ],
)
def test_bad_workflows_are_refused(
    validators: dict[str, CrdValidator], resource: dict[str, Any], complaint: str
) -> None:
    errors = validators["Workflow"].errors(resource)
    assert errors is not None and complaint in errors


def test_bad_status_and_other_kinds_are_refused(validators: dict[str, CrdValidator]) -> None:
    workflow = standard()
    workflow["status"] = {"lastRun": {"runId": "r", "status": "DONE"}}
    assert validators["Workflow"].errors(workflow) is not None
    workflow["status"] = {"conditions": [{"type": "Ready", "status": "Yes"}]}
    assert validators["Workflow"].errors(workflow) is not None
    workflow["status"] = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "m"}
        ],
        "lastRun": {"runId": "r", "status": "SUCCEEDED"},
    }
    assert validators["Workflow"].errors(workflow) is None

    model = yaml.safe_load((EXAMPLES / "models" / "retry_strategy.yaml").read_text())
    bad_model = copy.deepcopy(model)
    bad_model["spec"]["model"] = "sentiment"
    assert validators["Model"].errors(bad_model) is not None
    del model["spec"]["baseline"]
    assert validators["Model"].errors(model) is not None

    orchestrator = next(
        d
        for _, d in example_documents()
        if d["kind"] == "Orchestrator" and d["spec"]["type"] == "stream"
    )
    orchestrator["spec"]["maxConcurrentRuns"] = 0
    assert validators["Orchestrator"].errors(orchestrator) is not None


def test_workflow_schema_agrees_with_the_spec_model() -> None:
    definition = schema_of("Workflow")["properties"]["spec"]["properties"]["definition"]
    step = definition["properties"]["steps"]["items"]
    assert set(definition["properties"]) == set(WorkflowSpec.model_fields)
    assert set(step["properties"]) == set(StepSpec.model_fields)
    assert set(step["properties"]["retry"]["properties"]) == set(RetryPolicy.model_fields)
    assert set(step["properties"]["compensate"]["properties"]) == set(CompensateSpec.model_fields)
    inputs = definition["properties"]["inputs"]["additionalProperties"]["properties"]
    assert set(inputs) == set(InputSpec.model_fields)
    assert set(definition["properties"]["kind"]["enum"]) == set(get_args(WorkflowKind))
    assert step["properties"]["agent"]["enum"] == list(AGENT_NAMES)
    assert set(AGENT_ACTIONS) == set(AGENT_NAMES)
    assert step["properties"]["id"]["pattern"] == STEP_ID_PATTERN
    name_pattern = [
        m.pattern for m in WorkflowSpec.model_fields["name"].metadata if hasattr(m, "pattern")
    ]
    assert definition["properties"]["name"]["pattern"] in name_pattern
    action = re.compile(step["properties"]["action"]["pattern"])
    assert all(action.match(a) for actions in AGENT_ACTIONS.values() for a in actions)


BUILTIN = sorted((ROOT / "workflows").glob("*.yaml"))


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_builtin_workflows_can_be_applied_as_resources(
    validators: dict[str, CrdValidator], path: Path
) -> None:
    spec = WorkflowSpec.model_validate(yaml.safe_load(path.read_text()))
    resource = spec_to_resource(spec.model_dump(mode="json", exclude_none=True))
    assert validators["Workflow"].errors(resource) is None


def test_watcher_and_rbac_use_the_crd_names() -> None:
    from services.orchestrator_controller.kubernetes.agents import PLURAL as AGENTS
    from services.orchestrator_controller.kubernetes.configs import PLURAL as CONFIGS
    from services.orchestrator_controller.kubernetes.models import PLURAL as MODELS
    from services.orchestrator_controller.kubernetes.orchestrators import (
        PLURAL as ORCHESTRATORS,
    )

    workflow, model = CRDS["Workflow"]["spec"], CRDS["Model"]["spec"]
    assert (workflow["group"], workflow["names"]["plural"]) == (GROUP, PLURAL)
    assert (model["group"], model["names"]["plural"]) == (GROUP, MODELS)
    assert (CRDS["Agent"]["spec"]["group"], CRDS["Agent"]["spec"]["names"]["plural"]) == (
        GROUP,
        AGENTS,
    )
    orchestrator = CRDS["Orchestrator"]["spec"]
    assert (orchestrator["group"], orchestrator["names"]["plural"]) == (GROUP, ORCHESTRATORS)
    config = CRDS["Config"]["spec"]
    assert (config["group"], config["names"]["plural"]) == (GROUP, CONFIGS)
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    assert f'apiGroups: ["{GROUP}"]' in rbac
    plurals = (PLURAL, MODELS, AGENTS, ORCHESTRATORS, CONFIGS)
    assert "[" + ", ".join(f'"{p}"' for p in plurals) + "]" in rbac
    assert "[" + ", ".join(f'"{p}/status"' for p in plurals) + "]" in rbac


def test_orchestrator_schema_is_the_code_configuration() -> None:
    """Every field of every manager's configuration, spelled and bounded as the code has it,
    and nothing the code does not implement."""
    spec = schema_of("Orchestrator")["properties"]["spec"]
    assert spec["required"] == ["type"]
    assert spec["properties"]["type"]["enum"] == list(MANAGER_OF_TYPE)
    assert {k: v for k, v in spec["properties"].items() if k != "type"} == spec_properties()
    assert set(spec["properties"]) == {"type", *all_resource_fields()}
    for manager in MANAGER_OF_TYPE.values():
        assert set(resource_fields(manager).values()) == set(
            type(getattr(OrchestratorsConfig(), manager)).model_fields
        )
    in_force = schema_of("Orchestrator")["properties"]["status"]["properties"]["inForce"]
    assert set(in_force["properties"]) == set(all_resource_fields())


def test_orchestrator_examples_are_the_code_defaults() -> None:
    """examples/platform/orchestrators.yaml is what `python -m
    services.orchestrator_controller.policies.resource` prints: the five managers at the code's
    defaults (regenerate it with that command when the defaults change)."""
    path = EXAMPLES / "platform" / "orchestrators.yaml"
    assert path.read_text() == example_yaml()
    documents = list(yaml.safe_load_all(path.read_text()))
    defaults = OrchestratorsConfig().model_dump(mode="json")
    for document in documents:
        manager, overrides = spec_overrides(document["spec"])
        assert overrides == defaults[manager], manager
    assert sorted(document["spec"]["type"] for document in documents) == sorted(MANAGER_OF_TYPE)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"maxConcurrentRuns": 5}, "type"),
        ({"type": "priority"}, "type"),
        ({"type": "api", "hostRateWindowSeconds": 0}, "hostRateWindowSeconds"),
        ({"type": "batch", "paused": "yes"}, "paused"),
        ({"type": "file", "chunkSize": 0}, "chunkSize"),
        ({"type": "stream", "workflowKinds": "realtime_stream"}, "workflowKinds"),
    ],
)
def test_bad_orchestrators_are_refused(
    validators: dict[str, CrdValidator], spec: dict[str, Any], complaint: str
) -> None:
    resource = {"apiVersion": API_VERSION, "kind": "Orchestrator", "metadata": {"name": "o"}}
    errors = validators["Orchestrator"].errors({**resource, "spec": spec})
    assert errors is not None and complaint in errors
    assert validators["Orchestrator"].errors({**resource, "spec": {"type": "api"}}) is None


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"baseUrl": "http://quality:8080"}, "agentName"),
        ({"agentName": "Data Quality", "baseUrl": "http://quality:8080"}, "agentName"),
        ({"agentName": "data-quality", "baseUrl": "ftp://quality"}, "baseUrl"),
        ({"agentName": "data-quality", "baseUrl": "http://user:pw@quality"}, "baseUrl"),
        ({"agentName": "data-quality", "timeoutSeconds": 0}, "timeoutSeconds"),
        ({"agentName": "data-quality", "maxConcurrency": 0}, "maxConcurrency"),
        ({"agentName": "data-quality", "credentials": ["not a name"]}, "credentials"),
    ],
)
def test_bad_agents_are_refused(
    validators: dict[str, CrdValidator], spec: dict[str, Any], complaint: str
) -> None:
    agent = {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": "a"}, "spec": spec}
    errors = validators["Agent"].errors(agent)
    assert errors is not None and complaint in errors
    agent["spec"] = {"agentName": "data-quality", "baseUrl": "http://quality:8080/v2"}
    assert validators["Agent"].errors(agent) is None


def test_config_schema_is_the_live_settings() -> None:
    """Every live setting, spelled and bounded as LiveSettings has it (the CRD's spec keeps
    other fields, for the controller to refuse them by name), and the status says the same."""
    spec = schema_of("Config")["properties"]["spec"]
    assert "required" not in spec
    assert spec["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"] == config_resource.spec_properties()
    assert set(config_resource.live_fields().values()) == set(LiveSettings.model_fields)
    status = schema_of("Config")["properties"]["status"]["properties"]
    assert set(status["inForce"]["properties"]) == set(config_resource.live_fields())
    # Each live setting is a controller setting of the same name, default and bounds.
    from services.orchestrator_controller.settings import ControllerSettings

    for name, info in LiveSettings.model_fields.items():
        process = ControllerSettings.model_fields[name]
        assert info.default == process.default, name
        if name != "log_level":
            assert info.metadata == process.metadata, name


def test_config_example_is_the_code_defaults() -> None:
    """examples/platform/config.yaml is what `python -m
    services.orchestrator_controller.live.resource` prints: every live setting at the code's
    defaults (regenerate it with that command when they change)."""
    path = EXAMPLES / "platform" / "config.yaml"
    assert path.read_text() == config_resource.example_yaml()
    (document,) = yaml.safe_load_all(path.read_text())
    overrides = config_resource.spec_overrides(document["spec"])
    assert overrides == LiveSettings().model_dump()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"logLevel": "verbose"}, "logLevel"),
        ({"scheduleTickSeconds": 0}, "scheduleTickSeconds"),
        ({"maxNestingDepth": 1000}, "maxNestingDepth"),
        ({"maxSpecBytes": "big"}, "maxSpecBytes"),
    ],
)
def test_bad_configs_are_refused(
    validators: dict[str, CrdValidator], spec: dict[str, Any], complaint: str
) -> None:
    resource = {"apiVersion": API_VERSION, "kind": "Config", "metadata": {"name": "c"}}
    errors = validators["Config"].errors({**resource, "spec": spec})
    assert errors is not None and complaint in errors
    # Kept for the controller to refuse: a setting that needs a restart is not pruned.
    assert validators["Config"].errors({**resource, "spec": {"databaseUrl": "x"}}) is None
