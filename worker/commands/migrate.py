"""`worker migrate`: Alembic upgrade to head, then the inbox partitions for the coming days."""

from __future__ import annotations

import argparse
import asyncio

from alembic import command
from worker.commands import inbox
from worker.db.migrations import alembic_config
from worker.settings import Settings


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.database_url), revision)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="upgrade the schema to head and create inbox partitions")
    parser.set_defaults(handler=run)


async def build_schema(settings: Settings) -> None:
    """What `worker migrate` does, from inside a running event loop: head, then inbox partitions."""
    # Alembic's env.py runs its own event loop, so the upgrade gets a thread of its own.
    await asyncio.to_thread(upgrade, settings)
    await inbox.maintain(settings)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(build_schema(settings))
    return 0
