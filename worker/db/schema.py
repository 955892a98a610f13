"""Builds a database's schema: Alembic to head, then the inbox partitions for the coming days."""

from __future__ import annotations

import asyncio

from alembic import command
from worker.db.engine import create_engine
from worker.db.inbox_partitions import ensure_inbox_partitions
from worker.db.migrations import alembic_config
from worker.settings import Settings


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Alembic upgrade (blocking: Alembic's env.py runs an event loop of its own)."""
    command.upgrade(alembic_config(settings.database_url), revision)


async def maintain_inbox(settings: Settings) -> None:
    """Create the coming days' inbox partitions and drop the expired ones."""
    engine = create_engine(settings, pool_size=1)
    try:
        await ensure_inbox_partitions(engine, settings, drop_expired=True)
    finally:
        await engine.dispose()


async def build_schema(settings: Settings) -> None:
    """What `worker migrate` does, from inside a running event loop: head, then inbox partitions."""
    await asyncio.to_thread(upgrade, settings)
    await maintain_inbox(settings)
