"""The request examples an OpenAPI document gives, and their check against the document's own
schemas: what a client reading /docs (or schemathesis, which mixes them into its requests) sees.

An example may sit on the media type (`example`, or `examples` as Example Objects) or on the
body's schema (`examples`, as pydantic's `json_schema_extra` puts it); either counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema_rs


@dataclass(frozen=True)
class DocumentedBody:
    """One media type of one operation's request body, with the examples given for it."""

    label: str  # "POST /schedules"
    media_type: str
    schema: dict[str, Any]  # as the document gives it: usually a `$ref` into its components
    examples: list[Any]


def documented_bodies(document: dict[str, Any]) -> list[DocumentedBody]:
    """Every request body of the document, once per media type it accepts."""
    return [
        DocumentedBody(
            label=f"{method.upper()} {path}",
            media_type=media_type,
            schema=media.get("schema", {}),
            examples=_examples(document, media),
        )
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
    ]


def _examples(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [example["value"] for example in media["examples"].values()]
    return list(resolve(document, media.get("schema", {})).get("examples", []))


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the component its `$ref` names."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    component: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return component


def schema_errors(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Why `instance` does not match `schema`, whose `$ref`s point into the document's
    components (none when it matches)."""
    # The components ride along in the root, so `#/components/schemas/...` resolves in it.
    root = {**schema, "components": document.get("components", {})}
    validator = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
    return [
        f"/{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def without_examples(bodies: list[DocumentedBody]) -> list[str]:
    """The bodies that document no example, as `label (media type)`."""
    return sorted(f"{b.label} ({b.media_type})" for b in bodies if not b.examples)
