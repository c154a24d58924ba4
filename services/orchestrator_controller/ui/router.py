"""The web UI at /ui (static files, a client of the public API) and an offline /docs page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    """The UI is the front page."""
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
async def ui_shell() -> FileResponse:
    """The single-page shell; the pages are hash routes drawn by the JS modules."""
    # no-cache: a new version of the UI is picked up without a hard reload.
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
async def swagger() -> HTMLResponse:
    """Swagger UI from vendored assets: it works without a network."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="orchestrator-controller API",
        swagger_js_url="/ui/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/ui/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/ui/static/vendor/swagger-ui/favicon-32x32.png",
    )


def mount_ui(app: FastAPI) -> None:
    """Serve the UI and the offline docs (create the app with `docs_url=None`)."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
