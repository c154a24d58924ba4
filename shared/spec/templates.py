"""The `${...}` reference language of step parameters: parsing and safe resolution (no eval).

References: `${inputs.<name>}`, `${steps.<id>.output[.<key or index>...]}`, `${item}` (the
element of a `map_over` step), `${run.id}`. A string that is exactly one reference keeps the
referenced value's type; otherwise references are interpolated as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")


class TemplateError(ValueError):
    """A reference that cannot be parsed or resolved."""


@dataclass(frozen=True)
class Reference:
    root: str  # inputs | steps | item | run
    path: tuple[str, ...]

    @property
    def step_id(self) -> str | None:
        return self.path[0] if self.root == "steps" and self.path else None


def parse_reference(expression: str) -> Reference:
    """Parse the inside of `${...}`."""
    parts = expression.strip().split(".")
    if not parts or not all(_SEGMENT.match(p) for p in parts):
        raise TemplateError(f"malformed reference ${{{expression}}}")
    root, path = parts[0], tuple(parts[1:])
    if root == "inputs" and not path:
        raise TemplateError("${inputs} needs a name: ${inputs.<name>}")
    if root == "steps" and (len(path) < 2 or path[1] != "output"):
        raise TemplateError(f"${{{expression}}} must be ${{steps.<id>.output[.path]}}")
    if root == "run" and path != ("id",):
        raise TemplateError(f"unknown run field in ${{{expression}}}; only ${{run.id}}")
    # ${item} takes any path: it walks into the element of a map_over list.
    if root not in ("inputs", "steps", "item", "run"):
        raise TemplateError(
            f"unknown reference root {root!r} in ${{{expression}}}; use inputs, steps, item or run"
        )
    return Reference(root=root, path=path)


def input_reference(value: Any) -> str | None:
    """The input name when `value` is exactly `${inputs.<name>}` (a default naming another
    input, e.g. a state key defaulting to the dataset), else None."""
    if not isinstance(value, str) or not (whole := REFERENCE.fullmatch(value)):
        return None
    try:
        ref = parse_reference(whole.group(1))
    except TemplateError:
        return None
    return ref.path[0] if ref.root == "inputs" and len(ref.path) == 1 else None


def iter_references(value: Any) -> Iterator[Reference]:
    """Every reference inside a parameter value (nested dicts and lists included)."""
    if isinstance(value, str):
        for match in REFERENCE.finditer(value):
            yield parse_reference(match.group(1))
        if "${" in REFERENCE.sub("", value):
            raise TemplateError(f"unterminated reference in {value!r}")
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_references(item)


@dataclass
class TemplateContext:
    inputs: Mapping[str, Any]
    step_outputs: Mapping[str, Any]
    run_id: str
    item: Any = None
    has_item: bool = False
    # Text built by interpolation ("a ${x} b") is new data the engine would send and store:
    # its total per render is capped (whole references pass stored values along unchanged).
    max_text_chars: int = 1024 * 1024
    text_chars: int = 0


def _walk(value: Any, path: tuple[str, ...], shown: str) -> Any:
    for segment in path:
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.lstrip("-").isdigit():
            index = int(segment)
            if not -len(value) <= index < len(value):
                raise TemplateError(f"{shown}: index {index} out of range")
            value = value[index]
        else:
            raise TemplateError(f"{shown}: no {segment!r} in the referenced value")
    return value


def _lookup(ref: Reference, ctx: TemplateContext) -> Any:
    shown = "${" + ".".join((ref.root, *ref.path)) + "}"
    if ref.root == "inputs":
        if ref.path[0] not in ctx.inputs:
            raise TemplateError(f"{shown}: input {ref.path[0]!r} was not given")
        return _walk(ctx.inputs[ref.path[0]], ref.path[1:], shown)
    if ref.root == "steps":
        step_id = ref.path[0]
        if step_id not in ctx.step_outputs:
            raise TemplateError(f"{shown}: step {step_id!r} has no output")
        return _walk(ctx.step_outputs[step_id], ref.path[2:], shown)
    if ref.root == "item":
        if not ctx.has_item:
            raise TemplateError(f"{shown} used outside a map_over step")
        return _walk(ctx.item, ref.path, shown)
    return ctx.run_id


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(value: Any, ctx: TemplateContext) -> Any:
    """Resolve every reference in `value` against `ctx`."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return _lookup(parse_reference(whole.group(1)), ctx)
        text = REFERENCE.sub(lambda m: _as_text(_lookup(parse_reference(m.group(1)), ctx)), value)
        if text is not value:
            ctx.text_chars += len(text)
            if ctx.text_chars > ctx.max_text_chars:
                raise TemplateError(
                    f"interpolated text passes {ctx.max_text_chars} characters "
                    "(ENGINE_MAX_RENDERED_CHARS)"
                )
        return text
    if isinstance(value, Mapping):
        return {key: render(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, ctx) for item in value]
    return value
