"""Dependencies handlers reach clients through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator_controller.settings import ControllerSettings
from shared.auth import Scope, require_scope


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def`
# dependencies in a worker thread, which cost the controller a tenth of its CPU under load.
async def _settings(request: Request) -> ControllerSettings:
    settings: ControllerSettings = request.app.state.settings
    return settings


# Declared for the OpenAPI (the lock in /docs, the scope on each route); auto_error=False so
# the check and its 401/403 bodies stay in require_scope.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="an API key (CONTROLLER_API_KEYS); each route names the scope it needs",
)
_Credentials = HTTPAuthorizationCredentials | None


def _check(request: Request, scope: Scope) -> None:
    require_scope(request, request.app.state.settings.accepted_api_keys(), scope)


async def _read(
    request: Request, _: Annotated[_Credentials, Security(_bearer, scopes=["read"])]
) -> None:
    _check(request, "read")


async def _submit(
    request: Request, _: Annotated[_Credentials, Security(_bearer, scopes=["submit"])]
) -> None:
    _check(request, "submit")


async def _admin(
    request: Request, _: Annotated[_Credentials, Security(_bearer, scopes=["admin"])]
) -> None:
    _check(request, "admin")


SessionDep = Annotated[AsyncSession, Depends(_session)]
SettingsDep = Annotated[ControllerSettings, Depends(_settings)]
# Reads, runs (submit and cancel) and configuration (definitions, schedules) need their scope.
ReadKey = Depends(_read)
SubmitKey = Depends(_submit)
AdminKey = Depends(_admin)
