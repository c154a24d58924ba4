"""Custom resources the controller acts upon: a Workflow resource becomes a registered workflow
definition; a Model resource binds one of the platform's models to a registry entry.

`resources` holds the pure translation (resource -> spec, status bodies); `watcher` holds the
loop that lists and watches Workflow resources with the official kubernetes client, registers
what they carry and writes the outcome and the last run back to their status subresource;
`models` holds the loop that reads Model resources into `model_bindings`; `agents` the one
that registers Agent resources; `orchestrators` the one that puts Orchestrator resources in
force as the five managers' configuration; `leader` elects, through a Lease, the one replica
that runs the loops writing to the Kubernetes API and the shared database.
"""

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
    "InvalidWorkflowResource",
    "ResourceRef",
    "WorkflowResourceWatcher",
    "create_api_client",
    "in_cluster_namespace",
    "resource_to_spec",
    "resource_to_workflow_spec",
    "run_to_status",
    "spec_error_message",
    "spec_to_resource",
]
