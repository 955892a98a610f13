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


def run(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings)
    asyncio.run(inbox.maintain(settings))
    return 0
