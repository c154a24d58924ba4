"""The OpenAPI document: FastAPI's, with each secured route's scope written in its description."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def scoped_openapi(app: FastAPI) -> dict[str, Any]:
    """Build (once) the document /openapi.json serves; Swagger shows the scope under the lock."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                scopes = sorted(
                    {s for req in operation.get("security", []) for v in req.values() for s in v}
                )
                if scopes:
                    needs = f"Needs a bearer API key with the `{'`, `'.join(scopes)}` scope."
                    operation["description"] = (
                        f"{operation.get('description', '')}\n\n{needs}".strip()
                    )
        app.openapi_schema = document
    return app.openapi_schema


def install(app: FastAPI) -> None:
    """Serve `scoped_openapi` at /openapi.json."""
    app.openapi = lambda: scoped_openapi(app)  # type: ignore[method-assign]
