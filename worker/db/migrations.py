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


def alembic_config(database_url: str) -> Config:
    """Alembic config of this checkout (alembic.ini beside the package, or in the working directory)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        ini = base / "alembic.ini"
        if ini.is_file():
            config = Config(str(ini))
            config.attributes["database_url"] = database_url
            config.attributes["configure_logging"] = False
            return config
    raise FileNotFoundError("alembic.ini not found beside the worker package or in the working directory")


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
