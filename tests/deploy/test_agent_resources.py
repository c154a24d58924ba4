"""The built-in agents as Agent resources: rendered by the chart for each enabled agent, valid
against the Agent CRD, with the actions of the code's catalog (through a generated file the
chart reads, checked here so the two cannot drift), as are the examples'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml

from shared.settings import AGENT_NAMES
from shared.spec.catalog import AGENT_ACTIONS, chart_catalog

from .conftest import CHART, render
from .crd_schema import CrdValidator

CATALOG = CHART / "files" / "builtin-agents.json"


@pytest.fixture(scope="module")
def agent_crd() -> Iterator[CrdValidator]:
    validator = CrdValidator(
        yaml.safe_load((CHART / "crds" / "agents.ingestion.platform.io.yaml").read_text())
    )
    yield validator
    validator.close()


def _agents(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = [m for m in manifests if m["kind"] == "Agent"]
    by_name = {m["spec"]["agentName"]: m for m in found}
    assert len(by_name) == len(found), "two Agent resources name one agent"
    return by_name


def test_the_charts_catalog_is_the_codes() -> None:
    assert CATALOG.read_text().strip() == chart_catalog(), (
        f"regenerate: python -m shared.spec.catalog > {CATALOG.relative_to(CHART.parents[1])}"
    )


def test_each_enabled_built_in_agent_is_an_agent_resource(
    manifests: list[dict[str, Any]], agent_crd: CrdValidator
) -> None:
    agents = _agents(manifests)
    assert set(agents) == set(AGENT_NAMES)
    services = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in manifests
        if m["kind"] == "Service"
    }
    for name, resource in agents.items():
        spec = resource["spec"]
        assert "baseUrl" not in spec  # the controller's record of a built-in: BuiltIn
        assert spec["actions"] == sorted(AGENT_ACTIONS[name])
        assert spec["port"] == services[name]["spec"]["ports"][0]["port"]
        document = {k: v for k, v in resource.items() if k != "__template__"}
        assert agent_crd.errors(document) is None, name


def test_a_disabled_agent_has_no_resource_and_the_resources_can_be_turned_off(
    chart: helm_python.Chart,
) -> None:
    without_merger = _agents(render(chart, {"agents": {"data-merger": {"enabled": False}}}))
    assert set(without_merger) == set(AGENT_NAMES) - {"data-merger"}
    assert _agents(render(chart, {"agentResources": {"enabled": False}})) == {}


def test_the_examples_list_each_built_in_agents_actions() -> None:
    examples = CHART / "examples" / "platform" / "agents.yaml"
    documents = [d for d in yaml.safe_load_all(examples.read_text()) if d]
    listed = {d["spec"]["agentName"]: d["spec"]["actions"] for d in documents}
    assert set(listed) == set(AGENT_NAMES)
    for name, actions in listed.items():
        assert sorted(actions) == sorted(AGENT_ACTIONS[name]), name
