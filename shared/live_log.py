"""The platform-wide log level: a Config resource's `logLevel` reaches every service.

The controller puts a Config resource in force in its own memory (services/orchestrator_
controller/live/); the log level is the one live setting every service has, so the controller
also writes it to `platform_settings` (`publish_log_level`), and each engine and agent reads it
every `live_settings_poll_s` (`LogLevelFollower`). No row: each keeps its own LOG_LEVEL.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.errors import is_unavailable
from shared.logs import set_log_level

log = logging.getLogger(__name__)

LOG_LEVEL = "log_level"

_READ = text("SELECT value #>> '{}' AS level, source FROM platform_settings WHERE name = :name")
_WRITE = text(
    """
INSERT INTO platform_settings (name, value, source, updated_at)
VALUES (:name, to_jsonb(CAST(:value AS text)), :source, now())
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, source = EXCLUDED.source,
    updated_at = now()
WHERE (platform_settings.value, platform_settings.source) IS DISTINCT FROM
      (EXCLUDED.value, EXCLUDED.source)
"""
)
_CLEAR = text("DELETE FROM platform_settings WHERE name = :name")


async def publish_log_level(session: AsyncSession, level: str | None, source: str | None) -> None:
    """Put `level` in force for every service (None: each goes back to its own)."""
    if level is None or source is None:
        await session.execute(_CLEAR, {"name": LOG_LEVEL})
    else:
        await session.execute(_WRITE, {"name": LOG_LEVEL, "value": level, "source": source})


class LogLevelFollower:
    """Keeps this process's log level at the platform's, or at its own when none is set."""

    def __init__(self, sessionmaker: async_sessionmaker, own: str, *, interval_s: float) -> None:
        self.sessionmaker = sessionmaker
        self.own = own.lower()
        self.interval_s = interval_s
        self.current = self.own
        self.source = "settings"

    async def check(self) -> str:
        """Read the platform's level once and apply it if it changed; the level in force."""
        async with self.sessionmaker() as session:
            row = (await session.execute(_READ, {"name": LOG_LEVEL})).first()
        level, source = (row.level, row.source) if row is not None else (self.own, "settings")
        if level != self.current:
            set_log_level(level)
            # WARNING: the line must show whatever the old and the new levels are.
            log.warning(
                "live setting log_level: %s -> %s (%s)",
                self.current,
                level,
                source,
                extra={"setting": LOG_LEVEL, "source": source},
            )
            self.current, self.source = level, source
        return self.current

    async def check_quietly(self) -> None:
        """`check`, a failure logged: a database restarting leaves the level in force."""
        try:
            await self.check()
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("reading the platform's log level failed")

    async def run(self) -> None:
        """Check every `interval_s`; the service checks once itself before it serves."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check_quietly()
