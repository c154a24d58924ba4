"""Which earlier steps' outputs a step row reads when it runs (`step_runs.needs`): worked out
once, when the row is created, so that claiming it reads those outputs only, or none."""

from __future__ import annotations

from typing import Any

from shared.spec.models import StepSpec
from shared.spec.templates import TemplateError, iter_references

# Parsed specs are shared by the runs of one workflow (parse_spec caches them): remember each
# step's answer by identity. The step is kept in the entry, so its id cannot be reused meanwhile.
_KNOWN: dict[tuple[int, str], tuple[StepSpec, tuple[str, ...] | None]] = {}
_KNOWN_MAX = 4096


def step_needs(step: StepSpec, role: str = "action") -> tuple[str, ...] | None:
    """The ids of the steps whose outputs the row's templates reference, sorted (empty: none),
    or None when the spec does not tell (the claim then reads every output of the run).

    An action row renders `params` and `map_over` (an item re-renders `map_over` when its
    engine has not cached the list), a compensation row `compensate.params`. Every field of
    the action is searched, not just those two: one the engine comes to render later is then
    covered too (a superset only costs a read).
    """
    key = (id(step), role)
    known = _KNOWN.get(key)
    if known is not None and known[0] is step:
        return known[1]
    value: Any
    if role == "compensation":
        value = step.compensate.params if step.compensate is not None else {}
    else:
        value = step.model_dump(exclude={"compensate"})
    needs: tuple[str, ...] | None
    try:
        needs = tuple(sorted({r.step_id for r in iter_references(value) if r.step_id is not None}))
    except TemplateError:
        needs = None
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[key] = (step, needs)
    return needs


def needs_column(needs: tuple[str, ...] | None) -> str | None:
    """`needs` as the comma-joined text a batch statement's unnest takes (step ids have no
    commas: STEP_ID_PATTERN); '' is none, NULL is unknown."""
    return None if needs is None else ",".join(needs)
