"""Dependencies handlers reach clients through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
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


def _scoped(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    async def require(request: Request) -> None:
        require_scope(request, request.app.state.settings.accepted_api_keys(), scope)

    return require


SessionDep = Annotated[AsyncSession, Depends(_session)]
SettingsDep = Annotated[ControllerSettings, Depends(_settings)]
# Reads, runs (submit and cancel) and configuration (definitions, schedules) need their scope.
ReadKey = Depends(_scoped("read"))
SubmitKey = Depends(_scoped("submit"))
AdminKey = Depends(_scoped("admin"))
