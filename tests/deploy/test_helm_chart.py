"""The Helm chart rendered offline with the default and the production values, then checked."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import helm_python
import pytest

from .conftest import CHART, NAMESPACE, RELEASE, production_values, render
from .contract import (
    AGENTS,
    ALL_VARIABLES,
    MIGRATE_COMMAND,
    SECRET_VARIABLES,
    SERVICES,
    TRAIN_MODELS_COMMAND,
)
from .service_settings import settings_from_env

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
POD_KINDS = {"Deployment", "Job", "Pod"}


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def by_component(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in of_kind(manifests, kind)
    }


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]
    return spec if manifest["kind"] == "Pod" else spec["template"]["spec"]


def pod_labels(manifest: dict[str, Any]) -> dict[str, str]:
    if manifest["kind"] == "Pod":
        return dict(manifest["metadata"]["labels"])
    return dict(manifest["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_sources(manifests: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """Every variable a container sees, resolved through its ConfigMap and Secret refs."""
    configmaps = {m["metadata"]["name"]: m.get("data", {}) for m in of_kind(manifests, "ConfigMap")}
    secrets = {m["metadata"]["name"]: m.get("data", {}) for m in of_kind(manifests, "Secret")}
    seen: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            seen.update(configmaps[source["configMapRef"]["name"]])
        else:
            name = source["secretRef"]["name"]
            # An existing Secret is documented to hold exactly the secret variables.
            keys = secrets.get(name) or dict.fromkeys(SECRET_VARIABLES, "")
            seen.update({k: base64.b64decode(v).decode() if v else "" for k, v in keys.items()})
    for entry in container.get("env", []):
        seen[entry["name"]] = entry.get("value", "")
    return seen


# ---------------------------------------------------------------------------- lint and parse


@pytest.mark.parametrize("values", ["default", "production"])
def test_helm_lint_strict_passes(values: str) -> None:
    overrides = production_values() if values == "production" else None
    report = helm_python.lint(CHART, overrides, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], problems or report["errors"]


def test_every_manifest_is_a_named_kubernetes_object(manifests: list[dict[str, Any]]) -> None:
    assert manifests
    for manifest in manifests:
        assert manifest.get("apiVersion") and manifest.get("kind"), manifest["__template__"]
        name = manifest["metadata"]["name"]
        assert DNS_LABEL.match(name) and len(name) <= 63, name
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ingestion-platform"
    keys = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(keys) == len(set(keys)), "two objects with the same kind and name"


def test_one_deployment_and_service_per_service(manifests: list[dict[str, Any]]) -> None:
    deployments = by_component(manifests, "Deployment")
    services = by_component(manifests, "Service")
    assert set(deployments) == set(SERVICES)
    assert set(services) == set(SERVICES)
    for component, (command, port) in SERVICES.items():
        (container,) = pod_spec(deployments[component])["containers"]
        assert container["command"] == command
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert services[component]["spec"]["ports"][0]["port"] == port
        assert {"name": "PORT", "value": str(port)} in container["env"]


def test_no_daemonsets_hostpaths_or_privileged_pods(manifests: list[dict[str, Any]]) -> None:
    assert not of_kind(manifests, "DaemonSet")
    for manifest in manifests:
        if manifest["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(manifest)
        where = manifest["__template__"]
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["privileged"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if manifest["kind"] != "Pod":  # the test pod writes nothing
                assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_probes_use_health_on_the_serving_port(manifests: list[dict[str, Any]]) -> None:
    for manifest in of_kind(manifests, "Deployment"):
        (container,) = pod_spec(manifest)["containers"]
        port_names = {p["name"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/health", (manifest["metadata"]["name"], probe)
            assert get["port"] in port_names
        # Liveness tolerates a dependency outage longer than readiness does.
        live, ready = container["livenessProbe"], container["readinessProbe"]
        assert (
            live["periodSeconds"] * live["failureThreshold"]
            > ready["periodSeconds"] * ready["failureThreshold"]
        )


# ---------------------------------------------------------------------------- wiring


def test_selectors_match_labels_and_every_service_has_endpoints(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = of_kind(manifests, "Deployment")
    for deployment in deployments:
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    for service in of_kind(manifests, "Service"):
        backing = [d for d in deployments if selects(service["spec"]["selector"], pod_labels(d))]
        assert len(backing) == 1, service["metadata"]["name"]
        (container,) = pod_spec(backing[0])["containers"]
        target = service["spec"]["ports"][0]["targetPort"]
        assert target in {p["name"] for p in container["ports"]}
        assert backing[0]["spec"].get("replicas", 1) >= 1
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for manifest in of_kind(manifests, kind):
            selector = (
                manifest["spec"]["selector"]["matchLabels"]
                if kind == "PodDisruptionBudget"
                else manifest["spec"]["podSelector"]["matchLabels"]
            )
            matched = [d for d in deployments if selects(selector, pod_labels(d))]
            assert len(matched) == 1, (kind, manifest["metadata"]["name"])


def test_every_service_has_a_pdb_that_allows_evictions(manifests: list[dict[str, Any]]) -> None:
    pdbs = by_component(manifests, "PodDisruptionBudget")
    deployments = by_component(manifests, "Deployment")
    assert set(pdbs) == set(SERVICES)
    hpa = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    for component, pdb in pdbs.items():
        deployment = deployments[component]
        replicas = deployment["spec"].get("replicas")
        if replicas is None:
            replicas = hpa[deployment["metadata"]["name"]]["spec"]["minReplicas"]
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < replicas, component
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1, component


def test_agents_accept_traffic_only_from_the_engine_and_the_controller(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = by_component(manifests, "Deployment")
    policies = by_component(manifests, "NetworkPolicy")
    allowed = {"workflow-engine", "controller", "test-health"}
    test_pods = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in of_kind(manifests, "Pod")
    }
    for agent in AGENTS:
        policy = policies[agent]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        pod_peers = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
        other_peers = [p for p in rule["from"] if "podSelector" not in p]
        # Only the metrics scrapers' namespaces besides the release's own pods.
        assert all(set(p) == {"namespaceSelector"} for p in other_peers)
        components = {p["app.kubernetes.io/component"] for p in pod_peers}
        assert components <= allowed and {"workflow-engine", "controller"} <= components
        for component in AGENTS:
            assert not any(selects(p, pod_labels(deployments[component])) for p in pod_peers)
        assert selects(pod_peers[0], pod_labels(deployments["workflow-engine"]))
        assert selects(pod_peers[1], pod_labels(deployments["controller"]))
        if "test-health" in test_pods:
            assert any(selects(p, pod_labels(test_pods["test-health"])) for p in pod_peers)
    engine_rule = policies["workflow-engine"]["spec"]["ingress"][0]
    engine_peers = [
        p["podSelector"]["matchLabels"] for p in engine_rule["from"] if "podSelector" in p
    ]
    assert not any(selects(p, pod_labels(deployments[a])) for p in engine_peers for a in AGENTS)


def test_services_see_every_contract_variable(manifests: list[dict[str, Any]]) -> None:
    deployments = by_component(manifests, "Deployment")
    for component, deployment in deployments.items():
        (container,) = pod_spec(deployment)["containers"]
        env = env_sources(manifests, container)
        missing = ALL_VARIABLES - set(env)
        assert not missing, (component, missing)
    (configmap,) = of_kind(manifests, "ConfigMap")
    data = configmap["data"]
    services = {s["metadata"]["name"]: s for s in of_kind(manifests, "Service")}
    agent_urls = json.loads(data["AGENT_URLS"])
    assert set(agent_urls) == set(AGENTS)
    for agent, url in agent_urls.items():
        host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url).groups()  # type: ignore[union-attr]
        assert services[host]["metadata"]["labels"]["app.kubernetes.io/component"] == agent
        assert services[host]["spec"]["ports"][0]["port"] == int(port)
    engine_host = re.fullmatch(r"http://([a-z0-9-]+):8000", data["CONTROLLER_ENGINE_URL"])
    assert engine_host and engine_host.group(1) in services
    assert data["CONTROLLER_KUBERNETES_NAMESPACE"] == NAMESPACE
    assert json.loads(data["AGENT_ALLOWED_ROOTS"]) and isinstance(
        json.loads(data["AGENT_ALLOW_PRIVATE_HOSTS"]), list
    )
    assert data["ENVIRONMENT"] == "production"


def test_chart_created_secret_is_a_hook_before_the_migrations(
    default_manifests: list[dict[str, Any]],
) -> None:
    (secret,) = of_kind(default_manifests, "Secret")
    job = by_component(default_manifests, "Job")["migrations"]
    assert set(secret["data"]) == SECRET_VARIABLES
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["DATABASE_URL"].startswith(
        "postgresql+asyncpg://ingestion:change-me@airflow-postgresql.airflow.svc.cluster.local:5432/"
    )
    assert decoded["REDIS_URL"] == "redis://airflow-redis.airflow.svc.cluster.local:6379/0"
    assert len(decoded["SERVICE_TOKEN"]) == 48
    keys = json.loads(decoded["CONTROLLER_API_KEYS"])
    assert isinstance(keys, list) and len(keys) == 1 and len(keys[0]) == 40
    hooks = secret["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(hooks["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
    manifests: list[dict[str, Any]],
) -> None:
    job = by_component(manifests, "Job")["migrations"]
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert container["command"] == MIGRATE_COMMAND
    assert spec["restartPolicy"] == "Never"
    # Hooks run before the release's ConfigMap exists: only the (hook) Secret may be referenced.
    assert [list(s) for s in container["envFrom"]] == [["secretRef"]]
    assert "DATABASE_URL" in env_sources(manifests, container)


def test_models_are_trained_after_install_when_the_registry_lacks_them(
    manifests: list[dict[str, Any]],
) -> None:
    job = by_component(manifests, "Job")["model-training"]
    annotations = job["metadata"]["annotations"]
    # After the services exist (MLflow answers, history is in PostgreSQL), not before.
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == TRAIN_MODELS_COMMAND
    seen = env_sources(manifests, container)
    assert {"MLFLOW_TRACKING_URI", "DATABASE_URL"} <= set(seen)


def test_existing_secret_is_used_and_none_is_created(
    production_manifests: list[dict[str, Any]],
) -> None:
    assert not of_kind(production_manifests, "Secret")
    for manifest in of_kind(production_manifests, "Deployment") + of_kind(
        production_manifests, "Job"
    ):
        (container,) = pod_spec(manifest)["containers"]
        refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert refs == ["ingestion-platform-secrets"]


def test_controller_alone_may_watch_workflow_model_agent_and_orchestrator_resources(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = by_component(manifests, "Deployment")
    (role,) = of_kind(manifests, "Role")
    (binding,) = of_kind(manifests, "RoleBinding")
    rules = {(tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]}
    kinds = ("workflows", "models", "agents", "orchestrators", "configs")
    assert (kinds, ("get", "list", "watch")) in rules
    statuses = tuple(f"{kind}/status" for kind in kinds)
    assert (statuses, ("get", "patch", "update")) in rules
    # Beyond its own kinds, only the Lease of its leader election (kubernetes/leader.py).
    leases = [r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"]]
    assert [(r["resources"], r["verbs"]) for r in leases] == [
        (["leases"], ["get", "create", "update"])
    ]
    others = [r for r in role["rules"] if r not in leases]
    assert all(r["apiGroups"] == ["ingestion.platform.io"] for r in others)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    controller = pod_spec(deployments["controller"])
    assert controller["serviceAccountName"] == subject["name"]
    assert controller["automountServiceAccountToken"] is True
    # Each replica's identity in the Lease starts with its pod name (downward API).
    (container,) = controller["containers"]
    pod_name = {e["name"]: e for e in container["env"]}["CONTROLLER_POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for component in set(SERVICES) - {"controller"}:
        spec = pod_spec(deployments[component])
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] != subject["name"]


def test_engine_autoscales_on_cpu_and_on_the_queue_where_an_adapter_exists(
    default_manifests: list[dict[str, Any]], production_manifests: list[dict[str, Any]]
) -> None:
    for manifests, queue_metric in ((default_manifests, False), (production_manifests, True)):
        (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler")
        engine = by_component(manifests, "Deployment")["workflow-engine"]
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": engine["metadata"]["name"],
        }
        assert "replicas" not in engine["spec"], "the HPA owns the replica count"
        (container,) = pod_spec(engine)["containers"]
        assert container["resources"]["requests"]["cpu"]
        types = [m["type"] for m in hpa["spec"]["metrics"]]
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        if queue_metric:
            assert types == ["Resource", "External"]
            external = hpa["spec"]["metrics"][1]["external"]
            assert external["metric"]["name"] == "workflow_queue_size"
            assert external["target"]["type"] == "AverageValue"
        else:
            # auto, and offline rendering serves no external.metrics.k8s.io API.
            assert types == ["Resource"]


def test_service_monitor_scrapes_every_service(
    default_manifests: list[dict[str, Any]], production_manifests: list[dict[str, Any]]
) -> None:
    assert not of_kind(default_manifests, "ServiceMonitor")  # auto without the CRD's API
    (monitor,) = of_kind(production_manifests, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = of_kind(production_manifests, "Service")
    assert len([s for s in services if selects(selector, s["metadata"]["labels"])]) == len(SERVICES)
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_shared_data_volume_only_when_data_root_is_local(
    default_manifests: list[dict[str, Any]], production_manifests: list[dict[str, Any]]
) -> None:
    (claim,) = of_kind(default_manifests, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    deployments = by_component(default_manifests, "Deployment")
    for component in [*AGENTS, "workflow-engine"]:
        spec = pod_spec(deployments[component])
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == [claim["metadata"]["name"]], component
        (container,) = spec["containers"]
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert not of_kind(production_manifests, "PersistentVolumeClaim")
    for deployment in of_kind(production_manifests, "Deployment"):
        assert all("persistentVolumeClaim" not in v for v in pod_spec(deployment)["volumes"])


def test_production_overrides_reach_the_objects(production_manifests: list[dict[str, Any]]) -> None:
    deployments = by_component(production_manifests, "Deployment")
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ingestion-platform:0.1.0"
    for deployment in deployments.values():
        (container,) = pod_spec(deployment)["containers"]
        assert container["image"] == image
        assert pod_labels(deployment)["compute"] == "fargate"
    assert deployments["data-converter"]["spec"]["replicas"] == 4
    assert deployments["data-connector"]["spec"]["replicas"] == 2
    (converter,) = pod_spec(deployments["data-converter"])["containers"]
    assert converter["resources"]["limits"]["memory"] == "4Gi"
    (ingress,) = of_kind(production_manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == deployments["controller"]["metadata"]["name"]
    accounts = of_kind(production_manifests, "ServiceAccount")
    assert all("eks.amazonaws.com/role-arn" in a["metadata"]["annotations"] for a in accounts)


def test_helm_test_pod_checks_every_service(default_manifests: list[dict[str, Any]]) -> None:
    (pod,) = of_kind(default_manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    urls = pod["spec"]["containers"][0]["command"][3:]
    services = by_component(default_manifests, "Service")
    expected = {
        f"http://{services[c]['metadata']['name']}:{port}/health"
        for c, (_, port) in SERVICES.items()
    }
    assert set(urls) == expected


# ---------------------------------------------------------------------------- wrong values


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"engine": {"concurrency": 0}}, "/engine/concurrency"),
        ({"config": {"environment": "prod"}}, "/config/environment"),
        ({"config": {"logLevel": "verbose"}}, "/config/logLevel"),
        (
            {"agents": {"data-teleporter": {"enabled": True, "module": "x", "port": 9000}}},
            "/agents",
        ),
        ({"agents": {"data-merger": {"port": 80}}}, "/agents/data-merger/port"),
        (
            {"containerSecurityContext": {"privileged": True}},
            "/containerSecurityContext/privileged",
        ),
        ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"secrets": {"databaseUrl": "postgresql://u:p@db/x"}}, "/secrets/databaseUrl"),
        ({"secrets": {"apiKeys": ["short"]}}, "/secrets/apiKeys/0"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
        ({"persistence": {"enabled": False}}, "/persistence/enabled"),
        ({"engine": {"resources": {"requests": {"cpu": "lots"}}}}, "/engine/resources/requests"),
        ({"controller": {"replicas": "two"}}, "/controller/replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
    ],
)
def test_wrong_values_fail_at_install_time(
    chart: helm_python.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as info:
        render(chart, values)
    assert complaint in str(info.value)


def test_s3_data_root_needs_no_volume(chart: helm_python.Chart) -> None:
    manifests = render(
        chart, {"config": {"dataRoot": "s3://bucket/prefix"}, "persistence": {"enabled": False}}
    )
    assert not of_kind(manifests, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"engine": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas (5)"),
        ({"persistence": {"accessModes": ["ReadWriteOnce"]}}, "ReadWriteMany"),
        ({"controller": {"pdb": {"minAvailable": 2}}}, "controller.pdb.minAvailable"),
        ({"agents": {"data-merger": {"pdb": {"minAvailable": 1}}}}, "agents.data-merger"),
    ],
)
def test_inconsistent_values_fail_with_a_message(
    chart: helm_python.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(chart, values)
    assert complaint in str(info.value)


def test_disabling_an_agent_removes_it_everywhere(chart: helm_python.Chart) -> None:
    manifests = render(chart, {"agents": {"data-merger": {"enabled": False}}})
    assert "data-merger" not in by_component(manifests, "Deployment")
    assert "data-merger" not in by_component(manifests, "NetworkPolicy")
    (configmap,) = of_kind(manifests, "ConfigMap")
    assert "data-merger" not in json.loads(configmap["data"]["AGENT_URLS"])


def test_release_name_shapes_object_names(chart: helm_python.Chart) -> None:
    rendered = chart.render({}, name="a" * 53, namespace=NAMESPACE, is_install=True)
    assert rendered
    assert RELEASE == "rel"
    for path, text in rendered.items():
        for name in re.findall(r"^  name: (\S+)$", text, flags=re.M):
            assert len(name) <= 63, (path, name)


def test_each_service_reads_its_settings_from_the_chart(
    default_manifests: list[dict[str, Any]],
) -> None:
    deployments = by_component(default_manifests, "Deployment")
    services = by_component(default_manifests, "Service")
    engine_url = f"http://{services['workflow-engine']['metadata']['name']}:8000"
    for component, deployment in deployments.items():
        (container,) = pod_spec(deployment)["containers"]
        settings: Any = settings_from_env(component, env_sources(default_manifests, container))
        assert settings.environment == "production"
        assert settings.database_url.startswith("postgresql+asyncpg://ingestion:change-me@")
        assert settings.redis_url == "redis://airflow-redis.airflow.svc.cluster.local:6379/0"
        assert len(settings.service_token.get_secret_value()) == 48
        assert settings.data_root == "/data"
        assert set(settings.agent_urls) == set(AGENTS)
        if component == "controller":
            assert settings.engine_url == engine_url
            assert settings.kubernetes_watch is True
            assert settings.kubernetes_namespace == NAMESPACE
            assert settings.leader_election is True
            assert settings.lease_name == deployment["metadata"]["name"]
            assert len(settings.accepted_api_keys()) == 1
        elif component == "workflow-engine":
            assert (settings.concurrency, settings.lease_seconds) == (32, 30)
        else:
            assert settings.allowed_roots == ["/data"]
            assert settings.allow_private_hosts == []
            assert settings.mlflow_tracking_uri == "http://mlflow.mlflow.svc.cluster.local:5000"


def controller_settings_rendered(chart: helm_python.Chart, values: dict[str, Any]) -> Any:
    """The controller's settings as it would read them from the chart rendered with `values`."""
    manifests = render(chart, values)
    (container,) = pod_spec(by_component(manifests, "Deployment")["controller"])["containers"]
    return settings_from_env("controller", env_sources(manifests, container))


def test_leader_election_and_resync_values_reach_the_controller(chart: helm_python.Chart) -> None:
    default = controller_settings_rendered(chart, {})
    assert default.leader_election is True
    assert (default.lease_duration_s, default.lease_renew_deadline_s) == (15, 10)
    assert default.lease_retry_period_s == 2
    assert {
        default.model_resync_s,
        default.agent_resync_s,
        default.orchestrator_resync_s,
        default.config_resync_s,
        default.workflow_resync_s,
    } == {60}

    values = {
        "controller": {
            "kubernetesWatch": {"enabled": True, "resyncSeconds": 900},
            "leaderElection": {
                "enabled": True,
                "leaseName": "ingest-leader",
                "leaseDurationSeconds": 30,
                "renewDeadlineSeconds": 20,
                "retryPeriodSeconds": 4,
            },
        }
    }
    settings = controller_settings_rendered(chart, values)
    assert settings.lease_name == "ingest-leader"
    assert (settings.lease_duration_s, settings.lease_renew_deadline_s) == (30, 20)
    assert settings.lease_retry_period_s == 4
    assert {
        settings.model_resync_s,
        settings.agent_resync_s,
        settings.orchestrator_resync_s,
        settings.config_resync_s,
        settings.workflow_resync_s,
    } == {900}

    off = {"controller": {"leaderElection": {"enabled": False}}}
    assert controller_settings_rendered(chart, off).leader_election is False


@pytest.mark.parametrize(
    ("election", "complaint"),
    [
        ({"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}, "below leaseDurationSeconds"),
        ({"renewDeadlineSeconds": 2, "retryPeriodSeconds": 2}, "1.2 x retryPeriodSeconds"),
    ],
)
def test_lease_durations_that_would_let_two_replicas_lead_are_refused(
    chart: helm_python.Chart, election: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(chart, {"controller": {"leaderElection": {"enabled": True, **election}}})
    assert complaint in str(info.value)


@pytest.mark.parametrize(
    "values",
    [
        {"controller": {"kubernetesWatch": {"enabled": True, "resyncSeconds": 0}}},
        {"controller": {"kubernetesWatch": {"enabled": True, "resyncSeconds": 7200}}},
        {"controller": {"leaderElection": {"enabled": True, "leaseName": "Not_A_Name"}}},
    ],
)
def test_bad_leader_election_or_resync_values_fail_the_schema(
    chart: helm_python.Chart, values: dict[str, Any]
) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(chart, values)
