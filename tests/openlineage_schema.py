"""Validating OpenLineage events against JSON schemas of the spec.

No PyPI package ships the spec's own JSON files (openlineage-python ships classes generated
from them, not the files), and nothing else can be fetched here, so tests/openlineage_schemas.json
holds schemas derived for these tests from those generated classes: the RunEvent of spec 2-0-2
(required fields, types, the date-time, uri and uuid formats) and one document per facet the
platform emits, each under the URL its `_schemaURL` names. A facet is checked against the
document its own `_schemaURL` points to, under the key it is sent with, so a facet under the
wrong key, or pointing to a schema that does not exist, fails too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs

_DOCUMENTS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "openlineage_schemas.json").read_text()
)
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
_REGISTRY = jsonschema_rs.Registry(list(_DOCUMENTS.items()))


def _validator(url: str) -> Any:
    return jsonschema_rs.validator_for({"$ref": url}, registry=_REGISTRY, validate_formats=True)


_EVENT = _validator(CORE)


def _facets(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    holders = [event["run"].get("facets"), event["job"].get("facets")]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        holders += [dataset.get("facets"), dataset.get("inputFacets"), dataset.get("outputFacets")]
    return [(key, facet) for holder in holders for key, facet in (holder or {}).items()]


def schema_errors(event: dict[str, Any]) -> list[str]:
    """Every way the event breaks the schemas (empty: valid)."""
    errors = [f"{list(e.instance_path)}: {e.message}" for e in _EVENT.iter_errors(event)]
    if errors:
        return errors
    if not event["schemaURL"].startswith(CORE + "#/$defs/"):
        errors.append(f"schemaURL {event['schemaURL']} is not of spec {CORE}")
    for key, facet in _facets(event):
        document = facet["_schemaURL"].partition("#")[0]
        if document not in _DOCUMENTS:
            errors.append(f"facet {key}: no schema {document}")
            continue
        validator = _validator(document)
        errors += [f"facet {key}: {e.message}" for e in validator.iter_errors({key: facet})]
    return errors
