"""Alembic migrations of the storage schema, run programmatically (no alembic.ini needed).

`upgrade_database(url)` is what start-up and `cds-service migrate` call. For a developer writing a
new revision: `alembic_config(url)` gives a Config for `alembic.command.revision(...)`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # Passed as an attribute, not a main option: ConfigParser would read "%" in a password.
    config.attributes["database_url"] = url
    return config


def upgrade_database(url: str | URL | None = None, revision: str = "head") -> None:
    """`alembic upgrade head` on `url` (sync or async URL; default: CDS_DATABASE_URL). Idempotent."""
    if url is None:
        from cds_service.storage.settings import StorageSettings

        url = StorageSettings().database_url
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str | URL, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
