"""Apply the Alembic migrations: `python -m shared.db.migrate` (idempotent, safe to race)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.settings import CommonSettings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(settings: CommonSettings | None = None) -> Config:
    """An Alembic config pointing at our migrations, carrying the settings to use."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["settings"] = settings or CommonSettings()
    return config


def upgrade(settings: CommonSettings | None = None) -> None:
    """Bring the database (or the configured schema) to the newest revision."""
    command.upgrade(alembic_config(settings), "head")


if __name__ == "__main__":
    upgrade()
    print("migrations applied")
