"""Graph checks on a workflow spec: every refusal names the field at fault."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from shared.spec.models import time_limit_refusal
from shared.spec.templates import TemplateError, input_reference, iter_references

if TYPE_CHECKING:
    from shared.spec.models import WorkflowSpec


class SpecError(ValueError):
    """A spec refused for one field; str() is '<field>: <reason>'."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def topological_order(depends_on: Mapping[str, list[str]]) -> list[str]:
    """Step ids in an order where each comes after its dependencies; raise on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = path[path.index(node) :] + [node]
            raise SpecError("steps", "dependency cycle: " + " -> ".join(cycle))
        state[node] = 1
        for dep in depends_on[node]:
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for node in depends_on:
        visit(node, [])
    return order


def upstream_of(depends_on: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """For each step, every step it transitively depends on."""
    result: dict[str, set[str]] = {}
    for node in topological_order(depends_on):
        ancestors: set[str] = set()
        for dep in depends_on[node]:
            ancestors.add(dep)
            ancestors |= result[dep]
        result[node] = ancestors
    return result


# Agent name -> the actions it offers: the built-ins' static catalog plus the registered agents.
AgentCatalog = Mapping[str, Collection[str]]


def validate_workflow(spec: WorkflowSpec, agents: AgentCatalog | None = None) -> None:
    """Refuse duplicate ids, unknown dependencies, cycles and bad references, and, given the
    catalog of `agents`, unknown agents and actions.

    Without a catalog the agents are not checked: a stored spec must parse whatever agents are
    registered now (the check belongs where a spec enters, and registered agents live in the
    database, which this module does not read).
    """
    seen: set[str] = set()
    for i, step in enumerate(spec.steps):
        if step.id in seen:
            raise SpecError(f"steps[{i}].id", f"duplicate step id {step.id!r}")
        seen.add(step.id)
    if agents is not None:
        check_agents(spec, agents)
    for i, step in enumerate(spec.steps):
        for j, dep in enumerate(step.depends_on):
            if dep not in seen:
                raise SpecError(f"steps[{i}].depends_on[{j}]", f"unknown step {dep!r}")
            if dep == step.id:
                raise SpecError(f"steps[{i}].depends_on[{j}]", "a step cannot depend on itself")
    _check_input_defaults(spec)
    _check_time_limit_inputs(spec)
    graph = {step.id: list(step.depends_on) for step in spec.steps}
    ancestors = upstream_of(graph)
    for i, step in enumerate(spec.steps):
        fields: list[tuple[str, object, set[str]]] = [
            (f"steps[{i}].params", step.params, ancestors[step.id])
        ]
        if step.map_over is not None:
            fields.append((f"steps[{i}].map_over", step.map_over, ancestors[step.id]))
        if step.compensate:
            # Undoing a step needs what the step itself produced.
            visible = ancestors[step.id] | {step.id}
            fields.append((f"steps[{i}].compensate.params", step.compensate.params, visible))
        for field, value, upstream in fields:
            _check_references(spec, field, value, step.id, upstream, step.map_over)


def check_agents(spec: WorkflowSpec, agents: AgentCatalog) -> None:
    """Refuse a step naming an agent not in `agents`, or an action that agent lacks."""
    for i, step in enumerate(spec.steps):
        actions = agents.get(step.agent)
        if actions is None:
            known = ", ".join(sorted(agents))
            raise SpecError(f"steps[{i}].agent", f"unknown agent {step.agent!r}; known: {known}")
        if step.action not in actions:
            raise SpecError(
                f"steps[{i}].action",
                f"agent {step.agent!r} has no action {step.action!r}; "
                f"actions: {', '.join(sorted(actions))}",
            )
        if step.compensate and step.compensate.action not in actions:
            raise SpecError(
                f"steps[{i}].compensate.action",
                f"agent {step.agent!r} has no action {step.compensate.action!r}",
            )


def _check_input_defaults(spec: WorkflowSpec) -> None:
    # A default may be exactly `${inputs.<other>}`: it takes the other input's bound value.
    # One level only, so binding never chases chains or cycles.
    for name, declared in spec.inputs.items():
        for other in declared.required_if:
            if other not in spec.inputs or other == name:
                raise SpecError(
                    f"inputs.{name}.required_if", f"{other!r} is not another declared input"
                )
        if declared.enum is not None and declared.default not in [*declared.enum, None]:
            raise SpecError(f"inputs.{name}.default", "the default is not one of the enum")
        field = f"inputs.{name}.default"
        if not isinstance(declared.default, str) or "${" not in declared.default:
            continue
        target = input_reference(declared.default)
        if target is None:
            raise SpecError(field, "a default may only be exactly ${inputs.<name>}")
        if target not in spec.inputs or target == name:
            raise SpecError(field, f"${{inputs.{target}}} is not another declared input")
        if input_reference(spec.inputs[target].default) is not None:
            raise SpecError(field, f"input {target!r} defaults to a reference itself")


def _check_time_limit_inputs(spec: WorkflowSpec) -> None:
    for i, step in enumerate(spec.steps):
        if (name := step.timeout_from) is None:
            continue
        declared = spec.inputs.get(name)
        if declared is None:
            raise SpecError(f"steps[{i}].timeout_from", f"{name!r} is not a declared input")
        if declared.type not in ("number", "integer"):
            raise SpecError(f"steps[{i}].timeout_from", f"input {name!r} is not a number")
        if declared.default is not None and (why := time_limit_refusal(declared.default)):
            raise SpecError(f"inputs.{name}.default", f"a step time limit: {why}")


def _check_references(
    spec: WorkflowSpec,
    field: str,
    value: object,
    step_id: str,
    upstream: set[str],
    map_over: str | None,
) -> None:
    try:
        references = list(iter_references(value))
    except TemplateError as exc:
        raise SpecError(field, str(exc)) from exc
    for ref in references:
        if ref.root == "inputs" and ref.path[0] not in spec.inputs:
            raise SpecError(field, f"${{inputs.{ref.path[0]}}} is not a declared input")
        if ref.root == "steps" and ref.step_id not in upstream:
            raise SpecError(
                field,
                f"references step {ref.step_id!r}, which is not upstream of {step_id!r} "
                "(add it to depends_on)",
            )
        if ref.root == "item" and (map_over is None or field.endswith(".map_over")):
            raise SpecError(field, "${item} is only available in the params of a map_over step")


def deepest_path(value: object, *, limit: int) -> str | None:
    """The path of the first JSON node nested deeper than `limit`, or None.

    Iterative on purpose: a recursive walk over a hostile 100,000-level document would hit
    Python's recursion limit, which is the failure this check exists to prevent.
    """
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > limit:
            return path
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
    return None
