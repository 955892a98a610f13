"""Where the Alembic scripts are, which head this build expects, and where a database stands."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import structlog
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)
# How often a worker waiting for a migration looks again.
SCHEMA_POLL_S = 2.0


# Where the Alembic scripts are: inside the installed package (a wheel carries them there,
# see setup.py), else in the source checkout this module was imported from.
SCRIPT_DIRECTORIES = (
    Path(__file__).resolve().with_name("migration_scripts"),
    Path(__file__).resolve().parents[2] / "alembic",
)


def script_location() -> Path:
    """The directory of the Alembic scripts (env.py and versions/) this build ships."""
    for directory in SCRIPT_DIRECTORIES:
        if (directory / "env.py").is_file():
            return directory
    raise FileNotFoundError("the Alembic scripts are neither in the installed package nor in a source checkout")


def alembic_config(database_url: str) -> Config:
    """Alembic config built in code: no alembic.ini is read, whatever the working directory."""
    config = Config()
    # The option goes through ConfigParser interpolation: a `%` in the path must be doubled.
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


@lru_cache(maxsize=1)
def expected_head() -> str:
    """The Alembic head revision this build of the worker was written for."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("no Alembic head revision found")
    return head


async def current_revision(conn: AsyncConnection) -> str | None:
    """The database's Alembic revision, or None when it was never migrated."""
    result = await conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not result.scalar():
        return None
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def wait_for_schema(engine: AsyncEngine) -> None:
    """Wait until the database is at the Alembic head this build expects (a rollout may migrate later)."""
    head, warned = expected_head(), False
    while True:
        async with engine.connect() as conn:
            revision = await current_revision(conn)
        if revision == head:
            return
        if not warned:
            log.error("schema_behind", database_revision=revision, expected_revision=head)
            warned = True
        await asyncio.sleep(SCHEMA_POLL_S)
