"""Workflow custom resources: a Workflow resource becomes a registered workflow definition.

`resources` holds the pure translation (resource -> spec, status bodies); `watcher` holds the
loop that lists and watches the resources with the official kubernetes client, registers what
they carry and writes the outcome and the last run back to their status subresource.
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
