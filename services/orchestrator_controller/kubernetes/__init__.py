"""Custom resources the controller acts upon, one informer per kind (`informer`: list, watch
from the list's resourceVersion, re-list on 410 Gone and at each resync, backoff on API errors,
status writes through `status_writes`).

Each kind supplies only what to do on a change: `watcher` (Workflow: registers definitions and
reports their last run), `models` (Model: `model_bindings`), `agents` (Agent:
`registered_agents`), `orchestrators` (Orchestrator: the five managers' configuration, live),
`configs` (Config: the controller's live settings). `resources` holds the pure translation
(resource -> spec, status bodies); `bridge` builds the informers from the settings; `leader`
elects, through a Lease, the one replica that runs the informers writing to the shared
database and the one whose status writes count. docs/kubernetes.md says why this is built on
the official client rather than kopf or kr8s.
"""

from services.orchestrator_controller.kubernetes.informer import Informer, Kind, ResourceView
from services.orchestrator_controller.kubernetes.resources import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InvalidWorkflowResource,
    ResourceRef,
    resource_to_spec,
    resource_to_workflow_spec,
    run_to_status,
    spec_error_message,
    spec_to_resource,
)
from services.orchestrator_controller.kubernetes.watcher import (
    WorkflowResourceWatcher,
    create_api_client,
    in_cluster_namespace,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Informer",
    "InvalidWorkflowResource",
    "Kind",
    "ResourceRef",
    "ResourceView",
    "WorkflowResourceWatcher",
    "create_api_client",
    "in_cluster_namespace",
    "resource_to_spec",
    "resource_to_workflow_spec",
    "run_to_status",
    "spec_error_message",
    "spec_to_resource",
]
